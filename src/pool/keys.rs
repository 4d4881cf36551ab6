//! Idempotency keys: a fixed-capacity window of the requests that carried a key, and their
//! outcomes, so that a retry gets the original outcome instead of a second draw.
//!
//! # Shape
//! Everything is allocated once, as one block of zeroed u64 words, when the engine starts
//! (or when the first key arrives, for a pool without an engine), and nothing after; a pool
//! that never sees a key (recovery's, the command line's) never allocates it:
//! - an *entry ring* of `keys` entries in insertion order (key, first request id, draw count,
//!   insertion time, where its outcomes start in the arena), five words an entry;
//! - an *index* mapping a key to its entry: buckets of one cache line, seven slots and an
//!   overflow count each, one bucket per four ring entries (see [`BUCKET_SLOTS`]), keyed by
//!   a hash seeded per table, so that a client cannot choose keys that share a bucket;
//! - an *arena*: a ring of item words holding the outcomes of the window's draws,
//!   [`DRAWS_PER_KEY`] words per key (at least [`KEY_DRAWS_MIN`]), one word per draw.
//!
//! # Bounds and eviction
//! The window holds at most `keys` requests and at most `arena_len` draws
//! ([`KeyWindow::draws`]: 16 per key on average, 16 M draws at the default 1 M keys). A new
//! key that would pass either bound evicts the oldest keys first. A key older than `hours`
//! is expired: a lookup treats it as unknown (the request runs as a new one), and up to two
//! expired entries are dropped per insertion (bounded work per request). Insertion times
//! never go backwards (a clock step back reuses the newest time), so the ring is also in
//! time order.
//!
//! The pool owns one table ([`crate::pool::Pool`]); the core thread looks keys up, and
//! recovery rebuilds the window from the snapshot ([`KeyState`]) and the keys in the log
//! ([`crate::pool::Pool::replay_key`]).
//!
//! # The hash
//! Keys come from clients (over gRPC, from anyone). The first index hashed them with a fixed,
//! invertible function (`(lo ^ hi.rotl(29)) * C`): a client could compute thousands of keys
//! with one home slot and make every probe walk them on the core thread. The hash is now
//! two folded multiplies (foldhash's construction) of the key's halves XORed with a random
//! per-table seed (the OS's randomness; it lives only in memory, since recovery rebuilds
//! the index from the window's records). Not cryptographic, but without the seed a client
//! cannot aim at a bucket; a unit test crafts the keys that collided before.
//!
//! # Cost (measured: `rewardpool bench --pull 10 --keys`, 1 M-key window, 2-core VM)
//! - Until 2026-12 the benchmark's keys were a counter, which the fixed hash spread over
//!   the index more evenly than any random keys (Fibonacci hashing of consecutive
//!   integers: no two in a slot), so the figures below that date flattered the table; it
//!   now sends random-looking keys, as clients do (UUIDs). With random keys, one thread
//!   running pulls of 10 on a `Pool` (thread CPU time, window full): the single-slot
//!   linear-probing index ran keyed pulls at ~49-50 M draws/s, the buckets at ~53-60 M,
//!   against ~100 M keyless; the seeded hash itself costs nothing measurable (~49 M either
//!   way with the old index). What is left: ~4 ns a draw (~40 ns a pull) of work on the
//!   core thread per new key even with the whole table in the cache (1 Ki-key window:
//!   ~70 M), and ~5 ns more once the window is full and evicts (a window still filling
//!   runs at ~70 M). Tried and dropped: leaving evicted keys' slots stale, to be freed by
//!   the next insertion into their bucket (no victim bucket touched): no faster, and
//!   prefetching the ring and arena lines the next insertions use: no faster either.
//! - A keyed pull of 10 touches ~96 bytes of the table that no request touched before (its
//!   entry, 40; its outcomes, 40; its index slot, 16 amortised), so a filling window is
//!   mostly first-touch page faults: huge pages where the allocator asks for them (the
//!   binary's does: ~280 faults a run), and then the speed at which the host backs fresh
//!   memory decides (perf: from ~0 to half of the core thread's samples in
//!   `clear_page_erms`, run to run). On the core thread proper a keyed pull costs ~15 % of
//!   its draws: the index slots of a batch are prefetched, the outcomes recorded inline.
//! - So the engine takes the zeroing off the core thread: once the first key arrives, a
//!   helper thread makes the whole block present ([`KeyPages::populate`], `madvise`
//!   `MADV_POPULATE_WRITE`, 2 MiB at a time over the ring, the index and the arena in
//!   turn) while the core thread serves. A pool that never sees a key pays nothing (no
//!   resident memory: `draw --count 1` stays at the same RSS); one that does gets the whole
//!   window resident (~120 MB at 1 M keys) within ~0.1-0.2 s instead of as it fills.
//!   Populating at engine start instead would add ~120 MB and tens of ms to every start.
//!   Measured (50 interleaved pairs, 2-core VM shared with other work): keyed/keyless
//!   median 0.841 either way, lower quartile 0.76 → 0.81, worst 0.47 → 0.74; on two cores
//!   the helper competes with the producer and the core thread, so it removes the slow
//!   runs rather than speeding up the typical one (populating at start: median 0.86).
//! - Once the window is full, the memory is mostly hidden: each new key's index slot and its
//!   victim's are prefetched a group ahead, each key once (the core loop's look-ahead and
//!   `victims_at`; touching a whole ring chunk at every batch had read the same slots and
//!   victims ~10 times over with pulls of 10), and the next victims' entries with them.
//!   What is left is work on the core: one thread running pulls of 10 on a `Pool`, window
//!   present, keyed/keyless ~0.73 with a 1 M-key window against ~0.77 with a 1 Ki-key one
//!   that fits in the caches (perf: the extra time shows as slower draws around the key
//!   work, not in it: branch-heavy probes of random length, several per new key). Tried
//!   and dropped: probes scanning a cache line of slots without a branch per slot (slower:
//!   eight loads and compares where one or two did), an index at load 1/4 (within the
//!   noise, for 16 MB more).
//! - Then (measured in thread CPU time, so that the other work on the machine counts less):
//!   the victim's removal scans on from its slot to the end of its cluster, and that next
//!   slot was a miss of its own (7 % of a keyed run's samples on one load): prefetching the
//!   line after the victim's home slot too took keyed/keyless from ~0.71 to ~0.77; an
//!   outcome stored as its own 32-bit half instead of a load, mask and store of the arena
//!   word, ~+2 %; one field (`pending_at`) written per recorded draw instead of three,
//!   ~+1.5 % keyed (and keyless, which checks `is_recording` per draw). Bench, pulls of
//!   10, 20 M draws, 20 interleaved rounds on the shared VM: keyed 25.4 -> 27.8 M draws/s,
//!   keyed/keyless median of round ratios 0.73 -> 0.76 (ratio of medians 0.72 -> 0.81;
//!   perf/results/2026-11-30-issue9-keys2). Tried and dropped: the lookup's probe
//!   remembering the free slot that ended it so that the insertion does not probe again
//!   (the evictions' removals tracked to keep it right): no gain, the second probe reads
//!   lines the first just loaded; prefetching the line after each new key's home slot
//!   (slightly slower).
//! - Tried and dropped after that (perf/results/2026-12-01-issue9-keys4): the victim's index
//!   slot kept in its entry (eviction without a hash or a bucket scan; two hashes and a
//!   scan fewer per new key), and non-temporal stores for entries and outcomes: neither
//!   moved the bench (keyed ~57 M draws/s either way, keyless ~82 M). The two bucket loads
//!   per new key (its own and its victim's) still miss although prefetched a group ahead,
//!   and the draws around them run ~15 % slower; what is left needs the key work off the
//!   core thread.
//! - Every rotation snapshots the window: with it full (1 M keys of 10 draws), ~75 MB. The
//!   core thread copies the state (~11-17 ms); the flusher encodes and hashes it (~90 ms)
//!   and installs it, and the groups after the rotation wait for that install: p999 ~65 ms
//!   and max ~200 ms with 16 MiB segments, against 4 ms and 31 ms keyless.

use super::{ItemIndex, RequestId};

/// Default number of keys a window holds.
pub const KEYS_DEFAULT: u32 = 1 << 20;
/// Default retention of a key, in hours.
pub const HOURS_DEFAULT: u32 = 24;
/// Largest window (keys): about 2 GiB of address space at ~120 bytes a key, which a machine
/// without much memory can still reserve (pages are only touched as keys arrive).
pub const KEYS_MAX: u32 = 1 << 24;
/// Longest retention, in hours (a year).
pub const HOURS_MAX: u32 = 24 * 366;
/// Outcome words the arena keeps per key of the window, on average.
pub const DRAWS_PER_KEY: usize = 16;
/// The least outcome words an arena holds: one request of this many draws always fits (the
/// longest pull, `PULL_LEN_MAX`, is below it).
pub const KEY_DRAWS_MIN: usize = 1024;

/// How many keys are kept, and for how long (config `idempotency: {keys, hours}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyWindow {
    /// Most keys kept (1 ..= [`KEYS_MAX`]); the oldest is evicted first.
    pub keys: u32,
    /// Hours a key is kept (1 ..= [`HOURS_MAX`]); an older key runs as a new request.
    pub hours: u32,
}

impl Default for KeyWindow {
    fn default() -> KeyWindow {
        KeyWindow { keys: KEYS_DEFAULT, hours: HOURS_DEFAULT }
    }
}

impl KeyWindow {
    /// Outcome words (draws) the window keeps: [`DRAWS_PER_KEY`] per key, at least
    /// [`KEY_DRAWS_MIN`], rounded up to a power of two.
    #[must_use]
    pub fn draws(self) -> usize {
        (self.keys.max(1) as usize * DRAWS_PER_KEY).max(KEY_DRAWS_MIN).next_power_of_two()
    }

    fn expiry_s(self) -> u64 {
        u64::from(self.hours) * 3600
    }
}

/// A key as the window keeps it (snapshots and `Pool::state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key (never 0).
    pub key: u128,
    /// The request id of the request's first draw (the others follow it).
    pub first: RequestId,
    /// Draws of the request.
    pub count: u32,
    /// When the request was first served, seconds since the Unix epoch.
    pub unix_s: u32,
}

/// The window's contents, oldest key first: what a snapshot stores.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyState {
    /// The window's bounds.
    pub window: KeyWindow,
    /// Keys, oldest first.
    pub records: Vec<KeyRecord>,
    /// Every record's outcomes, concatenated in record order (`count` each).
    pub items: Vec<Option<ItemIndex>>,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLookup {
    /// Unknown or expired: the request runs as new (the table now records its draws).
    New,
    /// Known with the same count: the original outcomes, at arena position `at`
    /// ([`crate::pool::Pool::key_item`]).
    Replay {
        /// The original's first request id.
        first: RequestId,
        /// Where its outcomes start in the arena.
        at: u64,
    },
    /// Known with another count: a conflict.
    Conflict {
        /// The original's count.
        count: u32,
    },
}

/// The fixed-capacity table (see the module docs).
pub(crate) struct KeyTable {
    window: KeyWindow,
    /// Every array of the table in one zeroed allocation of u64 words (see `new`): the
    /// entry ring ([`ENTRY_WORDS`] words an entry), then the index, then the arena. Empty
    /// until the first key arrives or [`KeyTable::allocate`] (the engine calls it at start).
    words: Box<[u64]>,
    /// Its length once allocated.
    words_len: usize,
    /// Entry ring capacity - 1 (a power of two at least `window.keys`); live: `head..tail`.
    mask: u64,
    head: u64,
    tail: u64,
    /// The index starts at word `index_at` (a multiple of 64 bytes in memory: see
    /// `allocate`): `buckets` buckets of one cache line each, [`BUCKET_SLOTS`] slots and an
    /// overflow count. A slot holds the key's hash in the high 32 bits
    /// (its top bits are the home bucket, the rest a fingerprint) and its ring index + 1 in
    /// the low 32 (0 = free). A probe reads an entry only when the fingerprint matches, and
    /// removal finds homes without reading entries: one cache line per lookup, insertion and
    /// removal, almost always.
    index_at: usize,
    /// Buckets - 1 (a power of two).
    bucket_mask: u64,
    /// `32 - log2(buckets)`: the top bits of a hash's kept 32 are its home bucket.
    bucket_shift: u32,
    /// Item words (item index + 1, 0 = nothing), two per u64 from word `arena_at`;
    /// free-running end `arena_tail`.
    arena_at: usize,
    arena_len: u64,
    arena_mask: u64,
    arena_tail: u64,
    /// Newest insertion time (times never go backwards).
    newest_s: u32,
    /// Ring position up to which `touch_victims` has prefetched the victims' slots.
    victims_at: u64,
    /// The hash's key (random per table; see `hash`).
    seed: [u64; 2],
    /// Arena positions `pending_at..pending_end`: the newest entry's draws still to record
    /// (one field written per draw); the next one's request id is `pending_base + pending_at`
    /// (wrapping).
    pending_at: u64,
    pending_end: u64,
    pending_base: u64,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("window", &self.window)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The hash bits an index slot keeps (its high half); the low half is a ring index + 1.
const HASH_MASK: u64 = !(u32::MAX as u64);
// Ring indices + 1 fit in the low half, and the home slot in the kept hash bits.
const _: () = assert!((KEYS_MAX as u64) < u32::MAX as u64);
const _: () = assert!(((KEYS_MAX as u64) * 2).trailing_zeros() <= 32);

/// A key table's block as address ranges (the entry ring, the index, the arena), to make
/// its pages present ahead of the keys from a thread other than the core thread, so that
/// the core thread does not pay the kernel's first-touch zeroing (see the module's "Cost").
/// Carries no reference: see [`KeyPages::populate`] for why that is sound.
#[derive(Clone, Copy, Debug)]
pub struct KeyPages {
    /// Start address and bytes of the ring, the index and the arena.
    parts: [(usize, usize); 3],
}

impl KeyPages {
    /// Bytes of the block.
    #[must_use]
    pub fn len(self) -> usize {
        self.parts.iter().map(|p| p.1).sum()
    }

    /// Whether the block is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Makes the whole pages of the block present and writable (`madvise`
    /// `MADV_POPULATE_WRITE`, Linux 5.14 and later), `stretch` bytes at a time: the index
    /// first, whole (keys land anywhere in it, so every page of it is needed at once: in
    /// turn with the others, the core thread faulted its pages in itself, 2 MiB of
    /// zeroing a fault), then the ring and the arena in turn from their front (they fill
    /// from the front), while `go_on()` says so; returns the bytes populated. A kernel without it (`EINVAL`) or a failure stops
    /// it quietly: it is only a head start. Elsewhere than Linux it does nothing.
    pub fn populate(self, stretch: usize, mut go_on: impl FnMut() -> bool) -> usize {
        #[cfg(target_os = "linux")]
        {
            let page = 4096;
            let stretch = stretch.max(page) / page * page;
            // Page-aligned [at, end) per part: madvise wants an aligned start.
            let mut parts = self.parts.map(|(addr, len)| {
                let at = addr.next_multiple_of(page);
                (at, ((addr + len) / page * page).max(at))
            });
            let mut done = 0;
            // The index (part 1) alone, then all of them in turn.
            for only_index in [true, false] {
                while parts.iter().enumerate().any(|(i, p)| p.0 < p.1 && (i == 1 || !only_index)) {
                    for (i, part) in parts.iter_mut().enumerate() {
                        if only_index && i != 1 {
                            continue;
                        }
                        if part.0 >= part.1 {
                            continue;
                        }
                        if !go_on() {
                            return done;
                        }
                        let n = stretch.min(part.1 - part.0);
                        // SAFETY: MADV_POPULATE_WRITE only faults the pages of the range in,
                        // as a write would, without writing: it changes no byte (a present
                        // page keeps its contents, an absent anonymous one reads as the zero
                        // the block holds anyway), so it cannot race with the core thread's
                        // writes and creates no reference. Were the block freed meanwhile,
                        // the call would fail (ENOMEM) or fault in what is mapped there,
                        // unchanged. `part.0` is page-aligned, as madvise requires.
                        #[allow(unsafe_code)]
                        let rc = unsafe {
                            libc::madvise(part.0 as *mut libc::c_void, n, libc::MADV_POPULATE_WRITE)
                        };
                        if rc != 0 {
                            return done;
                        }
                        part.0 += n;
                        done += n;
                    }
                }
            }
            done
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (stretch, &mut go_on);
            0
        }
    }
}

/// A random seed for a table's hash. Without the OS's randomness (it does not fail on
/// Linux), the address of a stack value and the clock: less secret, still per process.
fn seed() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let here = std::ptr::addr_of!(bytes) as u64;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&here.to_le_bytes());
        bytes[8..].copy_from_slice(&now.to_le_bytes());
    }
    let (lo, hi) = bytes.split_at(8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0x5a; 8]));
    [word(lo), word(hi)]
}

/// Words of an entry: key low, key high, first request id, count | time << 32, arena start.
const ENTRY_WORDS: usize = 5;

/// Slots of an index bucket. A bucket is one 64-byte cache line: seven slots and the
/// bucket's overflow count (F14's and Swiss tables' shape, without their SIMD): a key
/// lives in its home bucket unless that was full when it was inserted, then in the next
/// bucket with a free slot, and each full bucket it passed counts it. A lookup scans one
/// line and stops where the overflow count is 0, which is almost always the home bucket;
/// a removal clears its slot and decrements the counts it raised, moving nothing. With
/// random keys, linear probing over single slots (the previous index) walked clusters
/// of random length and shifted them back on each removal: several mispredicted branches
/// per key, and a second cache line whenever a cluster crossed one.
const BUCKET_SLOTS: usize = 7;
/// Words of a bucket: its slots and its overflow count.
const BUCKET_WORDS: usize = BUCKET_SLOTS + 1;
/// Ring entries per bucket: a full window fills 4 of 7 slots of a bucket on average (a
/// bucket overflows with probability ~5 % then, Poisson), in as many bytes as the
/// previous index (two 8-byte slots per entry).
const KEYS_PER_BUCKET: usize = 4;
// The index always has a free slot: more slots than ring entries.
const _: () = assert!(BUCKET_SLOTS > KEYS_PER_BUCKET);

impl KeyTable {
    /// An empty table for `window`.
    ///
    /// # Panics
    /// If `window.keys` is 0 or above [`KEYS_MAX`] (the config refuses those).
    pub(crate) fn new(window: KeyWindow) -> KeyTable {
        assert!(window.keys >= 1, "a key window holds at least one key");
        assert!(window.keys <= KEYS_MAX, "keys={} max={KEYS_MAX}", window.keys);
        let capacity = (window.keys as usize).next_power_of_two();
        let buckets = (capacity / KEYS_PER_BUCKET).max(1);
        let draws = window.draws();
        // Where the index starts if the block happens to be 64-byte aligned (`allocate`
        // moves it, and the arena, up to the next cache line otherwise).
        let index_at = capacity * ENTRY_WORDS;
        let arena_at = index_at + buckets * BUCKET_WORDS;
        // One block (allocated by `allocate`), not seven arrays, and only for a pool that
        // uses keys: an allocator zero-fills memory it reuses (glibc once its mmap
        // threshold has risen, mimalloc in the binary), and zeroing the tables of pools that
        // never saw a key (recovery's, the benchmark's baseline) took a third of a
        // benchmark's samples (perf, 1 M-key default window).
        KeyTable {
            window,
            words: Box::default(),
            // Room to align the index.
            words_len: arena_at + draws / 2 + BUCKET_WORDS - 1,
            mask: capacity as u64 - 1,
            head: 0,
            tail: 0,
            index_at,
            bucket_mask: buckets as u64 - 1,
            bucket_shift: 32 - buckets.trailing_zeros(),
            arena_at,
            arena_len: draws as u64,
            arena_mask: draws as u64 - 1,
            arena_tail: 0,
            newest_s: 0,
            victims_at: 0,
            seed: seed(),
            pending_at: 0,
            pending_end: 0,
            pending_base: 0,
        }
    }

    pub(crate) fn window(&self) -> KeyWindow {
        self.window
    }

    /// Allocates the table now if it is not yet (one zeroed block: see `new`). A pool that
    /// never sees a key (recovery's, the command line's) never allocates it.
    #[cold]
    pub(crate) fn allocate(&mut self) {
        if self.words.is_empty() {
            self.words = vec![0_u64; self.words_len].into_boxed_slice();
            // Buckets on cache-line boundaries: a probe then loads one line, not two.
            let line = BUCKET_WORDS * std::mem::size_of::<u64>();
            let at = self.words.as_ptr() as usize + self.index_at * std::mem::size_of::<u64>();
            let pad = (at.next_multiple_of(line) - at) / std::mem::size_of::<u64>();
            self.index_at += pad;
            self.arena_at += pad;
        }
    }

    /// The table's block, to make its pages present from another thread ([`KeyPages`]);
    /// `None` until allocated.
    pub(crate) fn pages(&self) -> Option<KeyPages> {
        if self.words.is_empty() {
            return None;
        }
        let base = self.words.as_ptr() as usize;
        let word = std::mem::size_of::<u64>();
        let ends = [self.index_at, self.arena_at, self.arena_at + (self.arena_len / 2) as usize];
        let starts = [0, self.index_at, self.arena_at];
        Some(KeyPages {
            parts: [0, 1, 2].map(|i| (base + starts[i] * word, (ends[i] - starts[i]) * word)),
        })
    }

    /// The first word of entry `seq`.
    #[inline]
    fn entry(&self, seq: u64) -> usize {
        (seq & self.mask) as usize * ENTRY_WORDS
    }

    #[inline]
    fn key_of(&self, e: usize) -> u128 {
        u128::from(self.words[e]) | (u128::from(self.words[e + 1]) << 64)
    }

    #[inline]
    fn first_of(&self, e: usize) -> u64 {
        self.words[e + 2]
    }

    #[inline]
    fn count_of(&self, e: usize) -> u32 {
        self.words[e + 3] as u32
    }

    #[inline]
    fn time_of(&self, e: usize) -> u32 {
        (self.words[e + 3] >> 32) as u32
    }

    #[inline]
    fn at_of(&self, e: usize) -> u64 {
        self.words[e + 4]
    }

    #[inline]
    fn slot(&self, s: u64) -> u64 {
        self.words[self.index_at + s as usize]
    }

    #[inline]
    fn set_slot(&mut self, s: u64, v: u64) {
        self.words[self.index_at + s as usize] = v;
    }

    /// Entries in the ring (superseded ones included until they are evicted).
    pub(crate) fn len(&self) -> u64 {
        self.tail - self.head
    }

    /// The most draws one keyed request may have.
    pub(crate) fn count_max(&self) -> u32 {
        u32::try_from(self.arena_len).unwrap_or(u32::MAX)
    }

    /// The key's hash, high 32 bits kept (the rest is where the slot keeps the ring index).
    ///
    /// Keyed by this table's random seed: keys come from clients (over gRPC, from anyone),
    /// and with a fixed, invertible hash a client could choose thousands of keys with one
    /// home slot and make every probe of this linear-probing index walk them all on the core
    /// thread. A folded multiply of the seeded halves (foldhash's construction: not
    /// cryptographic, but without the seed a client cannot aim at a slot); the seed lives
    /// only in memory, since recovery rebuilds the index from the window's records.
    #[inline]
    fn hash(&self, key: u128) -> u64 {
        // The 128-bit product of a and b, its halves XORed.
        let fold = |a: u64, b: u64| {
            let product = u128::from(a).wrapping_mul(u128::from(b));
            (product as u64) ^ ((product >> 64) as u64)
        };
        let mixed = fold((key as u64) ^ self.seed[0], ((key >> 64) as u64) ^ self.seed[1]);
        // A second multiply by a fixed odd constant spreads the first's bits into the top
        // ones the index uses (alone, keys that differ in a few low bits of a half landed in
        // too few buckets: ~490 for 1000 such keys in 1024 buckets, against ~630 at random).
        fold(mixed, 0x9E37_79B9_7F4A_7C15) & HASH_MASK
    }

    /// The home bucket of a hash (or of a slot's value: its high bits are the hash's).
    #[inline]
    fn home(&self, hash: u64) -> u64 {
        (hash >> 32) >> self.bucket_shift
    }

    /// The bucket after `b` (the last one's is the first).
    #[inline]
    fn next_bucket(&self, b: u64) -> u64 {
        (b + 1) & self.bucket_mask
    }

    /// Index word of bucket `b`'s slot `i` (its overflow count: `i` = [`BUCKET_SLOTS`]).
    #[inline]
    fn at(b: u64, i: usize) -> u64 {
        b * BUCKET_WORDS as u64 + i as u64
    }

    /// Bit `i` set where bucket `b`'s slot `i` satisfies `f`. Computed for all the slots
    /// without a branch: with random keys, which slots of a bucket are taken and where a key
    /// sits are random, and a scan that stopped at the first hit mispredicted about once a
    /// bucket (with a 1 Ki-key window, all in the cache, keyed pulls ran at ~0.5 of keyless
    /// that way).
    #[inline]
    fn slots_where(&self, b: u64, f: impl Fn(u64) -> bool) -> u32 {
        let at = self.index_at + Self::at(b, 0) as usize;
        let mut bits = 0;
        if let Some(slots) = self.words.get(at..at + BUCKET_SLOTS) {
            for (i, &v) in slots.iter().enumerate() {
                bits |= u32::from(f(v)) << i;
            }
        }
        bits
    }

    /// The slot of bucket `b` holding `want` (a whole slot value), if any.
    #[inline]
    fn slot_holding(&self, b: u64, want: u64) -> Option<u64> {
        let bits = self.slots_where(b, |v| v == want);
        (bits != 0).then(|| Self::at(b, bits.trailing_zeros() as usize))
    }

    /// Bucket `b`'s overflow count: the keys stored past it whose home bucket is at or
    /// before it (their insertions found it full). A probe for a key goes on past `b`
    /// only while it is not 0.
    #[inline]
    fn overflow(&self, b: u64) -> u64 {
        self.slot(Self::at(b, BUCKET_SLOTS))
    }

    #[inline]
    fn add_overflow(&mut self, b: u64, by: i64) {
        let s = Self::at(b, BUCKET_SLOTS);
        self.set_slot(s, self.slot(s).wrapping_add_signed(by));
    }

    /// Starts loading `key`'s home slot into the cache (see `Pool::touch_key`). On x86-64 a
    /// prefetch hint, which retires at once: the draws served meanwhile overlap the miss.
    /// A plain load there stalled retirement (perf: 11 % of the core thread's samples on the
    /// loads of a batch's slots, 1 M-key window); elsewhere a plain load.
    #[inline]
    pub(crate) fn touch(&self, key: u128) {
        if self.words.is_empty() {
            return;
        }
        self.prefetch_slot(Self::at(self.home(self.hash(key)), 0));
    }

    /// Starts loading the index slots of the keys the next `n` insertions will evict (the
    /// oldest, once the window is full), as `touch` does for the keys looked up: in steady
    /// state every insertion also removes its victim from the index, a second random miss.
    /// Victims already touched by an earlier call are skipped (`victims_at`), and the ring
    /// entries of the victims after these are prefetched in turn, so that the next call
    /// reads their keys from the cache instead of stalling on them.
    #[inline]
    pub(crate) fn touch_victims(&mut self, n: u64) {
        if self.words.is_empty() {
            return;
        }
        let over = (self.len() + n).saturating_sub(u64::from(self.window.keys)).min(self.len());
        let from = self.victims_at.max(self.head);
        let to = self.head + over;
        if from >= to {
            return;
        }
        for seq in from..to {
            let e = self.entry(seq);
            if self.count_of(e) != 0 {
                self.prefetch_slot(Self::at(self.home(self.hash(self.key_of(e))), 0));
            }
        }
        self.victims_at = to;
        // The next victims' entries (their key and count words: an entry may straddle
        // two cache lines).
        for seq in to..(to + (to - from)).min(self.tail) {
            let e = self.entry(seq);
            self.prefetch_word(e);
            self.prefetch_word(e + 3);
        }
    }

    /// A prefetch hint for index word `s` (a plain load off x86-64).
    #[inline]
    fn prefetch_slot(&self, s: u64) {
        self.prefetch_word(self.index_at + s as usize);
    }

    /// A prefetch hint for word `w` of the block (a plain load off x86-64).
    #[inline]
    fn prefetch_word(&self, w: usize) {
        let word = &self.words[w];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = std::ptr::from_ref(word).cast::<i8>();
            // SAFETY: SSE is part of every x86-64 target (the baseline), so the instruction
            // exists; a prefetch is a hint that never faults and changes no memory, and `p`
            // points at a word of `words` (bounds-checked above) anyway.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        std::hint::black_box(*word);
    }

    /// The index slot and ring index of `key`, if it is in the index.
    #[inline]
    fn find(&self, key: u128) -> Option<(u64, u64)> {
        if self.words.is_empty() {
            return None;
        }
        let hash = self.hash(key);
        let mut b = self.home(hash);
        // Bounded: a bucket's overflow count is 0 unless a key passed it, and the index
        // has more slots than keys, so some bucket on the way is not full.
        loop {
            // Slots whose kept hash bits are the key's (a free slot only if those are 0).
            let mut bits = self.slots_where(b, |v| (v ^ hash) >> 32 == 0);
            while bits != 0 {
                let s = Self::at(b, bits.trailing_zeros() as usize);
                bits &= bits - 1;
                let v = self.slot(s);
                if v != 0 {
                    let i = (v & !HASH_MASK) - 1;
                    if self.key_of(self.entry(i)) == key {
                        return Some((s, i));
                    }
                }
            }
            if self.overflow(b) == 0 {
                return None;
            }
            b = self.next_bucket(b);
        }
    }

    /// Frees index slot `s` and takes its key off the overflow counts of the buckets its
    /// insertion passed (from its home bucket up to its own). Nothing moves: no other slot
    /// is read or written.
    fn remove_slot(&mut self, s: u64) {
        let mut b = self.home(self.slot(s) & HASH_MASK);
        let own = s / BUCKET_WORDS as u64;
        self.set_slot(s, 0);
        while b != own {
            self.add_overflow(b, -1);
            b = self.next_bucket(b);
        }
    }

    fn expired(&self, seq: u64, now_s: u32) -> bool {
        let time = u64::from(self.time_of(self.entry(seq)));
        u64::from(now_s) >= time + self.window.expiry_s()
    }

    /// Drops the oldest entry (from the index too, unless it was superseded: count 0).
    /// Its slot is found by its whole value (the key's hash bits and the entry's ring
    /// index, unique among the index's slots), so the probe reads no entry.
    fn evict_head(&mut self) {
        debug_assert!(self.head < self.tail);
        let seq = self.head;
        let e = self.entry(seq);
        if self.count_of(e) != 0 {
            let hash = self.hash(self.key_of(e));
            let want = hash | ((seq & self.mask) + 1);
            let mut b = self.home(hash);
            // Bounded: the entry is in its home bucket or in one its insertion reached
            // through buckets it found full, whose overflow counts it raised.
            loop {
                if let Some(s) = self.slot_holding(b, want) {
                    self.remove_slot(s);
                    break;
                }
                debug_assert_ne!(self.overflow(b), 0, "a live entry is indexed");
                if self.overflow(b) == 0 {
                    break;
                }
                b = self.next_bucket(b);
            }
        }
        self.head += 1;
    }

    /// Removes the entry at ring index `i` (index slot `s`) from the index and marks it
    /// superseded (count 0), so eviction and `state` skip it without probing the index.
    fn supersede(&mut self, s: u64, i: u64) {
        self.remove_slot(s);
        let e = self.entry(i);
        // Count 0, time kept.
        self.words[e + 3] &= !u64::from(u32::MAX);
    }

    /// Where the oldest entry's outcomes start (the arena's tail when the ring is empty).
    fn oldest_at(&self) -> u64 {
        if self.head == self.tail {
            self.arena_tail
        } else {
            self.at_of(self.entry(self.head))
        }
    }

    /// Looks `key` up for a request of `count` draws at `now_s`; on [`KeyLookup::New`] the
    /// key is inserted with `first` as its first request id and the next `count` draws
    /// recorded ([`KeyTable::record`]) are its outcomes.
    #[inline]
    pub(crate) fn lookup(&mut self, key: u128, count: u32, first: u64, now_s: u32) -> KeyLookup {
        debug_assert_ne!(key, 0);
        if let Some((s, i)) = self.find(key) {
            if !self.expired(i, now_s) {
                let e = self.entry(i);
                if self.count_of(e) != count {
                    return KeyLookup::Conflict { count: self.count_of(e) };
                }
                return KeyLookup::Replay { first: RequestId(self.first_of(e)), at: self.at_of(e) };
            }
            self.supersede(s, i);
        }
        self.insert(key, count, first, now_s);
        KeyLookup::New
    }

    /// Inserts `key` (not in the index) and starts recording its `count` draws.
    fn insert(&mut self, key: u128, count: u32, first: u64, now_s: u32) {
        assert!(count >= 1 && count <= self.count_max(), "count={count}");
        debug_assert!(!self.is_recording(), "the previous key's draws were all recorded");
        if self.words.is_empty() {
            self.allocate();
        }
        let now_s = now_s.max(self.newest_s);
        self.newest_s = now_s;
        for _ in 0..2 {
            if self.head < self.tail && self.expired(self.head, now_s) {
                self.evict_head();
            }
        }
        while self.len() >= u64::from(self.window.keys) {
            self.evict_head();
        }
        let end = self.arena_tail + u64::from(count);
        while self.head < self.tail && end - self.at_of(self.entry(self.head)) > self.arena_len {
            self.evict_head();
        }
        let seq = self.tail;
        let e = self.entry(seq);
        self.words[e] = key as u64;
        self.words[e + 1] = (key >> 64) as u64;
        self.words[e + 2] = first;
        self.words[e + 3] = u64::from(count) | (u64::from(now_s) << 32);
        self.words[e + 4] = self.arena_tail;
        let hash = self.hash(key);
        let mut b = self.home(hash);
        // Bounded: the index has more slots than the ring has entries.
        let s = loop {
            if let Some(s) = self.slot_holding(b, 0) {
                break s;
            }
            self.add_overflow(b, 1);
            b = self.next_bucket(b);
        };
        self.set_slot(s, hash | ((seq & self.mask) + 1));
        self.tail += 1;
        self.pending_at = self.arena_tail;
        self.pending_end = end;
        self.pending_base = first.wrapping_sub(self.arena_tail);
        self.arena_tail = end;
    }

    /// Inserts a key read back from a snapshot or the log, superseding an older entry of
    /// the same key; its `count` outcomes follow through [`KeyTable::record`].
    pub(crate) fn replay(&mut self, record: KeyRecord) {
        if let Some((s, i)) = self.find(record.key) {
            self.supersede(s, i);
        }
        self.pending_end = self.pending_at;
        self.insert(record.key, record.count, record.first.0, record.unix_s);
    }

    /// True while the newest key still waits for outcomes.
    #[inline]
    pub(crate) fn is_recording(&self) -> bool {
        self.pending_at < self.pending_end
    }

    /// The key whose draws are being recorded (the newest).
    pub(crate) fn recording_key(&self) -> u128 {
        self.key_of(self.entry(self.tail.wrapping_sub(1)))
    }

    /// The request id the next recorded draw must have.
    pub(crate) fn pending_id(&self) -> u64 {
        self.pending_base.wrapping_add(self.pending_at)
    }

    /// Records the outcome of the newest key's next draw.
    #[inline]
    pub(crate) fn record(&mut self, item: Option<ItemIndex>) {
        debug_assert!(self.is_recording());
        let word = u64::from(item.map_or(0, |ItemIndex(i)| i + 1));
        let j = self.pending_at & self.arena_mask;
        let w = &mut self.words[self.arena_at + (j >> 1) as usize];
        // The half `item` reads back ((j & 1) * 32 bits up), stored alone: a plain store,
        // not a load, mask and store (the arena's next words are rarely in the cache, and a
        // load that misses stalls the core thread where a store does not).
        let half = if cfg!(target_endian = "little") { j & 1 } else { 1 - (j & 1) };
        // SAFETY: `w` is a valid, exclusively borrowed u64 (bounds-checked above); a u64 is
        // two u32 halves, u32's alignment (4) divides u64's, and `half` is 0 or 1, so the
        // pointer stays inside `w` and is aligned; any bit pattern is a valid u64.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::from_mut(w).cast::<u32>().add(half as usize).write(word as u32);
        }
        self.pending_at += 1;
    }

    /// The outcome at arena position `at` (valid right after a lookup returned it).
    #[inline]
    pub(crate) fn item(&self, at: u64) -> Option<ItemIndex> {
        let j = at & self.arena_mask;
        let word = (self.words[self.arena_at + (j >> 1) as usize] >> ((j & 1) * 32)) as u32;
        word.checked_sub(1).map(ItemIndex)
    }

    /// The window's live keys, oldest first (allocates: snapshots only). One sequential
    /// pass over the entry ring and the arena, no index probe.
    pub(crate) fn state(&self) -> KeyState {
        let mut state = KeyState {
            window: self.window,
            records: Vec::with_capacity(self.len() as usize),
            items: Vec::with_capacity((self.arena_tail - self.oldest_at()) as usize),
        };
        for seq in self.head..self.tail {
            let e = self.entry(seq);
            // Superseded entries (count 0: the key was inserted again) are not the key's
            // outcome any more; neither is one still waiting for its draws.
            let count = self.count_of(e);
            if count == 0 || (seq + 1 == self.tail && self.is_recording()) {
                continue;
            }
            state.records.push(KeyRecord {
                key: self.key_of(e),
                first: RequestId(self.first_of(e)),
                count,
                unix_s: self.time_of(e),
            });
            let at = self.at_of(e);
            state.items.extend((0..u64::from(count)).map(|j| self.item(at + j)));
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::deadline::{deadline, UNIT_TEST_DEADLINE};
    use proptest::prelude::*;
    use std::collections::{HashMap, VecDeque};

    fn window(keys: u32, hours: u32) -> KeyWindow {
        KeyWindow { keys, hours }
    }

    /// Keys a client could craft against a fixed hash: under the old unseeded one
    /// (`(lo ^ hi.rotate_left(29)) * C`) every one of them had the same home slot, and each
    /// new key's probe walked all the others. Seeded, they spread over the index; two tables
    /// hash them differently.
    #[test]
    fn crafted_keys_do_not_share_a_home_slot() {
        let _deadline = deadline("crafted_keys_do_not_share_a_home_slot", UNIT_TEST_DEADLINE);
        let t = KeyTable::new(window(1 << 12, 24));
        let x = 0x0123_4567_89ab_cdef_u64;
        let keys: Vec<u128> = (1..=1000_u64)
            .map(|hi| (u128::from(hi) << 64) | u128::from(x ^ hi.rotate_left(29)))
            .collect();
        let old = |k: &u128| ((*k as u64) ^ ((*k >> 64) as u64).rotate_left(29)) >> 40;
        assert!(keys.iter().all(|k| old(k) == old(&keys[0])), "the keys collide unseeded");
        let homes: std::collections::HashSet<u64> =
            keys.iter().map(|&k| t.home(t.hash(k))).collect();
        // 1000 keys into 1024 buckets at random: 638 distinct homes expected (sd ~9).
        assert!(homes.len() > 600, "only {} distinct home buckets", homes.len());
        let other = KeyTable::new(window(1 << 12, 24));
        assert!(keys.iter().any(|&k| other.hash(k) != t.hash(k)), "the seed is not per table");
    }

    fn serve(t: &mut KeyTable, key: u128, count: u32, first: u64, now: u32) -> KeyLookup {
        let found = t.lookup(key, count, first, now);
        if found == KeyLookup::New {
            for j in 0..count {
                t.record(Some(ItemIndex(j + 7)));
            }
        }
        found
    }

    #[test]
    fn a_key_replays_and_conflicts() {
        let _deadline = deadline("a_key_replays_and_conflicts", UNIT_TEST_DEADLINE);
        let mut t = KeyTable::new(window(4, 1));
        assert_eq!(serve(&mut t, 5, 3, 10, 100), KeyLookup::New);
        let KeyLookup::Replay { first, at } = t.lookup(5, 3, 99, 101) else { panic!() };
        assert_eq!(first, RequestId(10));
        assert_eq!(
            (0..3).map(|j| t.item(at + j)).collect::<Vec<_>>(),
            [7, 8, 9].map(|i| Some(ItemIndex(i)))
        );
        assert_eq!(t.lookup(5, 2, 99, 101), KeyLookup::Conflict { count: 3 });
    }

    #[test]
    fn touching_lookups_and_victims_changes_nothing() {
        let _deadline =
            deadline("touching_lookups_and_victims_changes_nothing", UNIT_TEST_DEADLINE);
        let mut t = KeyTable::new(window(3, 1));
        t.touch(1);
        t.touch_victims(0);
        t.touch_victims(5);
        for k in 1..=3 {
            assert_eq!(serve(&mut t, k, 2, k as u64 * 10, 0), KeyLookup::New);
        }
        let before = t.state();
        for n in [0, 1, 3, 100] {
            t.touch_victims(n);
        }
        t.touch(2);
        t.touch(99);
        assert_eq!(t.state(), before);
        assert!(matches!(t.lookup(1, 2, 0, 0), KeyLookup::Replay { .. }));
    }

    #[test]
    fn the_oldest_key_is_evicted_at_the_bound() {
        let _deadline = deadline("the_oldest_key_is_evicted_at_the_bound", UNIT_TEST_DEADLINE);
        let mut t = KeyTable::new(window(3, 1));
        for k in 1..=4 {
            assert_eq!(serve(&mut t, k, 1, k as u64, 0), KeyLookup::New);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(serve(&mut t, 1, 1, 9, 0), KeyLookup::New, "key 1 was evicted");
        assert!(matches!(t.lookup(3, 1, 0, 0), KeyLookup::Replay { .. }));
    }

    #[test]
    fn the_arena_evicts_the_oldest_when_it_wraps() {
        let _deadline = deadline("the_arena_evicts_the_oldest_when_it_wraps", UNIT_TEST_DEADLINE);
        let mut t = KeyTable::new(window(1000, 1));
        let draws = window(1000, 1).draws() as u32;
        assert_eq!(serve(&mut t, 1, 1000, 1, 0), KeyLookup::New);
        assert_eq!(serve(&mut t, 2, draws - 1000, 2000, 0), KeyLookup::New);
        assert!(matches!(t.lookup(1, 1000, 0, 0), KeyLookup::Replay { .. }));
        assert_eq!(serve(&mut t, 3, 1, 1_000_000, 0), KeyLookup::New);
        assert_eq!(t.lookup(1, 1000, 0, 0), KeyLookup::New, "key 1's outcomes were overwritten");
    }

    #[test]
    fn an_expired_key_runs_as_new() {
        let _deadline = deadline("an_expired_key_runs_as_new", UNIT_TEST_DEADLINE);
        let mut t = KeyTable::new(window(8, 2));
        assert_eq!(serve(&mut t, 1, 1, 1, 1000), KeyLookup::New);
        assert!(matches!(t.lookup(1, 1, 0, 1000 + 7199), KeyLookup::Replay { .. }));
        assert_eq!(serve(&mut t, 1, 2, 5, 1000 + 7200), KeyLookup::New, "expired: no conflict");
        assert!(matches!(
            t.lookup(1, 2, 0, 1000 + 7200),
            KeyLookup::Replay { first: RequestId(5), .. }
        ));
    }

    #[test]
    fn state_round_trips_through_replay() {
        let _deadline = deadline("state_round_trips_through_replay", UNIT_TEST_DEADLINE);
        let mut t = KeyTable::new(window(8, 2));
        for k in 1..=5 {
            serve(&mut t, k, k as u32, k as u64 * 10, 50);
        }
        // A key read back again supersedes its older entry.
        t.replay(KeyRecord { key: 2, first: RequestId(100), count: 1, unix_s: 60 });
        t.record(None);
        let state = t.state();
        let keys: Vec<u128> = state.records.iter().map(|r| r.key).collect();
        assert_eq!(keys, [1, 3, 4, 5, 2]);
        assert_eq!(state.items.len(), 1 + 3 + 4 + 5 + 1);
        let mut back = KeyTable::new(state.window);
        let mut items = state.items.iter();
        for r in &state.records {
            back.replay(*r);
            for _ in 0..r.count {
                back.record(*items.next().unwrap());
            }
        }
        assert_eq!(back.state(), state);
    }

    /// One entry of the reference model.
    #[derive(Clone, Debug)]
    struct Entry {
        seq: u64,
        key: u128,
        first: u64,
        count: u32,
        time: u32,
        at: u64,
        items: Vec<Option<ItemIndex>>,
    }

    /// The reference: the insertion order (a `VecDeque`) and each key's live entry (a
    /// `HashMap`), with the table's rules written the plain way.
    struct Model {
        window: KeyWindow,
        order: VecDeque<Entry>,
        live: HashMap<u128, u64>,
        tail: u64,
        arena_tail: u64,
        newest: u32,
    }

    impl Model {
        fn expired(&self, e: &Entry, now: u32) -> bool {
            u64::from(now) >= u64::from(e.time) + u64::from(self.window.hours) * 3600
        }

        fn entry(&self, seq: u64) -> &Entry {
            self.order.iter().find(|e| e.seq == seq).unwrap()
        }

        fn evict(&mut self) {
            let e = self.order.pop_front().unwrap();
            if self.live.get(&e.key) == Some(&e.seq) {
                self.live.remove(&e.key);
            }
        }

        fn serve(&mut self, key: u128, count: u32, first: u64, now: u32) -> KeyLookup {
            if let Some(&seq) = self.live.get(&key) {
                let e = self.entry(seq);
                if !self.expired(e, now) {
                    if e.count != count {
                        return KeyLookup::Conflict { count: e.count };
                    }
                    return KeyLookup::Replay { first: RequestId(e.first), at: e.at };
                }
                self.live.remove(&key);
            }
            let now = now.max(self.newest);
            self.newest = now;
            for _ in 0..2 {
                if self.order.front().is_some_and(|e| self.expired(e, now)) {
                    self.evict();
                }
            }
            while self.order.len() >= self.window.keys as usize {
                self.evict();
            }
            let end = self.arena_tail + u64::from(count);
            while self.order.front().is_some_and(|e| end - e.at > self.window.draws() as u64) {
                self.evict();
            }
            let items = (0..count).map(|j| item_of(first + u64::from(j))).collect();
            let seq = self.tail;
            self.tail += 1;
            self.order.push_back(Entry {
                seq,
                key,
                first,
                count,
                time: now,
                at: self.arena_tail,
                items,
            });
            self.live.insert(key, seq);
            self.arena_tail = end;
            KeyLookup::New
        }

        fn state(&self) -> KeyState {
            let mut s = KeyState { window: self.window, ..KeyState::default() };
            for e in self.order.iter().filter(|e| self.live.get(&e.key) == Some(&e.seq)) {
                s.records.push(KeyRecord {
                    key: e.key,
                    first: RequestId(e.first),
                    count: e.count,
                    unix_s: e.time,
                });
                s.items.extend_from_slice(&e.items);
            }
            s
        }
    }

    /// The outcome the tests record for request id `id`: an item, or nothing every 5th.
    fn item_of(id: u64) -> Option<ItemIndex> {
        (!id.is_multiple_of(5)).then_some(ItemIndex((id % 7) as u32))
    }

    #[derive(Clone, Debug)]
    enum Op {
        Serve { key: u128, count: u32 },
        Tick { seconds: u32 },
    }

    /// The index's invariants: each bucket's overflow count is the number of keys stored
    /// past it whose home bucket is at or before it; every slot points at a window entry
    /// of its key, and every entry not superseded has exactly one slot.
    fn index_holds(t: &KeyTable) -> Result<(), String> {
        if t.words.is_empty() {
            return Ok(());
        }
        let buckets = t.bucket_mask + 1;
        let mut passed = vec![0_u64; buckets as usize];
        let mut indexed = HashMap::new();
        for b in 0..buckets {
            for i in 0..BUCKET_SLOTS {
                let v = t.slot(KeyTable::at(b, i));
                if v == 0 {
                    continue;
                }
                let mut h = t.home(v);
                while h != b {
                    passed[h as usize] += 1;
                    h = t.next_bucket(h);
                }
                let ring = (v & !HASH_MASK) - 1;
                let e = t.entry(ring);
                if t.hash(t.key_of(e)) != v & HASH_MASK {
                    return Err(format!("slot {b}.{i}: its entry's key has another hash"));
                }
                if indexed.insert(ring, (b, i)).is_some() {
                    return Err(format!("ring index {ring} has two slots"));
                }
            }
        }
        for b in 0..buckets {
            if t.overflow(b) != passed[b as usize] {
                let (o, p) = (t.overflow(b), passed[b as usize]);
                return Err(format!("bucket {b}: overflow count {o}, but {p} keys passed it"));
            }
        }
        for seq in t.head..t.tail {
            let e = t.entry(seq);
            let has = indexed.remove(&(seq & t.mask)).is_some();
            if (t.count_of(e) != 0) != has {
                return Err(format!("entry {seq}: count {}, indexed {has}", t.count_of(e)));
            }
        }
        if let Some((ring, (b, i))) = indexed.into_iter().next() {
            return Err(format!("slot {b}.{i} points at ring index {ring}, outside the window"));
        }
        Ok(())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (1_u128..24, prop_oneof![3 => 1_u32..4, 1 => 300_u32..1000])
                .prop_map(|(key, count)| Op::Serve { key, count }),
            1 => (0_u32..4000).prop_map(|seconds| Op::Tick { seconds }),
            // A clock step back: insertion times never go backwards.
            1 => Just(Op::Tick { seconds: 0 }),
        ]
    }

    proptest! {
        /// Insert, lookup, evict (both bounds) and expire agree with a HashMap + VecDeque
        /// model, and so does the window's state.
        #[test]
        fn matches_the_reference_model(
            keys in 1_u32..12,
            hours in 1_u32..3,
            ops in prop::collection::vec(op(), 1..300),
            back in 0_u32..3000,
        ) {
            let _deadline = deadline("matches_the_reference_model", UNIT_TEST_DEADLINE);
            let w = window(keys, hours);
            let mut t = KeyTable::new(w);
            let mut m = Model {
                window: w,
                order: VecDeque::new(),
                live: HashMap::new(),
                tail: 0,
                arena_tail: 0,
                newest: 0,
            };
            let mut now = 10_000_u32;
            let mut next_id = 1_u64;
            for op in ops {
                match op {
                    Op::Tick { seconds: 0 } => now -= back.min(now),
                    Op::Tick { seconds } => now += seconds,
                    Op::Serve { key, count } => {
                        let expected = m.serve(key, count, next_id, now);
                        let got = t.lookup(key, count, next_id, now);
                        match (expected, got) {
                            (KeyLookup::New, KeyLookup::New) => {
                                for j in 0..u64::from(count) {
                                    t.record(item_of(next_id + j));
                                }
                                next_id += u64::from(count);
                            }
                            (KeyLookup::Replay { first, at }, KeyLookup::Replay { first: f, at: a }) => {
                                prop_assert_eq!(first, f);
                                let e = m.entry(*m.live.get(&key).unwrap());
                                let got: Vec<_> = (0..u64::from(count)).map(|j| t.item(a + j)).collect();
                                prop_assert_eq!(&got, &e.items);
                                prop_assert_eq!(at, a);
                            }
                            (e, g) => prop_assert_eq!(e, g),
                        }
                        prop_assert_eq!(t.len(), m.order.len() as u64);
                        if let Err(e) = index_holds(&t) {
                            prop_assert!(false, "{}", e);
                        }
                    }
                }
            }
            prop_assert_eq!(t.state(), m.state());
        }
    }
}
