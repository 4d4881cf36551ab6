//! Zero allocation in steady state (STYLE §2.7): a counting global allocator proves that
//! 1M draws, after warm-up, allocate nothing on the caller side nor on the core side; and
//! that with the durable log (`buffered` and `sync`, within one segment) the caller, the core
//! and the flusher allocate nothing either. Every outcome is also named (`ItemIds`), so the
//! id lookup is inside the count. Pulls of 10 (pipelined with `try_pull` + `drain`, and
//! blocking `pull` read through its iterator) are inside every count too, and so are keyed
//! pulls (new keys, then their retries answered from the key window) and keyed draws. Keyed
//! requests through the WAL journal, written as batch frames, allocate nothing either, nor do
//! two pools of one `Host` drawn from alternately. The engine's metrics (counters,
//! histograms and remaining quantities, stored once per group) are updated inside every
//! count, and an observer's `Meter::read` while armed allocates nothing either.
//!
//! The count is process-wide while armed (the core is another thread). This binary runs
//! without libtest's harness (its `main` below), so no thread but the engine's and this
//! one's runs while armed; nothing here prints while armed (printing allocates). `REWARDPOOL_ALLOC_BACKTRACE=1` captures a backtrace of
//! the first armed allocation and prints it on failure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rewardpool::engine::CorePin;
use rewardpool::storage::{OsStorage, SegmentWrites};
use rewardpool::store::{open_engine_on, Durability, WalOptions};
use rewardpool::{DrawError, Engine, EngineConfig, ItemSpec, MemoryJournal, Pool, Rng};

/// Counts allocations (alloc, alloc_zeroed, realloc) while armed.
struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static CAPTURE: AtomicBool = AtomicBool::new(false);
static FIRST: Mutex<Option<String>> = Mutex::new(None);

impl Counting {
    #[inline]
    fn count(&self) {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            if CAPTURE.swap(false, Ordering::Relaxed) {
                // Disarm while capturing: the backtrace allocates.
                ARMED.store(false, Ordering::Relaxed);
                let trace = std::backtrace::Backtrace::force_capture().to_string();
                if let Ok(mut first) = FIRST.try_lock() {
                    *first = Some(trace);
                }
                ARMED.store(true, Ordering::Relaxed);
            }
        }
    }
}

// SAFETY: forwards every call unchanged to `System`, which upholds the `GlobalAlloc`
// contract; counting has no effect on the returned memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WINDOW: u64 = 256;
/// Segment size of the durable scenarios: 200k draws fit in one.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Pipelined draws: `try_draw` up to `WINDOW` in flight, `drain` the outcomes, each named
/// through an `ItemIds` handle (every catalog here has an unlimited item, so every draw wins
/// one). Returns how many were acknowledged (no errors expected).
fn pipelined(client: &mut rewardpool::Client, n: u64) -> u64 {
    pipelined_requests(client, n, None)
}

/// Draws per pull in the pull scenarios.
const PULL: u32 = 10;

/// Pipelined pulls of [`PULL`]: `try_pull` up to `WINDOW` requests in flight, `drain` the
/// outcomes (one per draw), each named. Returns how many draws were acknowledged.
fn pipelined_pulls(client: &mut rewardpool::Client, pulls: u64) -> u64 {
    pipelined_requests(client, pulls, Some(PULL))
}

/// `requests` single draws (`pull` None) or pulls of `pull`, up to `WINDOW` requests in
/// flight, every outcome drained and named; returns the draws acknowledged.
fn pipelined_requests(client: &mut rewardpool::Client, requests: u64, pull: Option<u32>) -> u64 {
    let mut ids = client.item_ids();
    let draws = requests * u64::from(pull.unwrap_or(1));
    let (mut submitted, mut delivered, mut failures, mut unnamed) = (0, 0, 0, 0);
    while delivered < draws {
        while submitted < requests && client.outstanding() < WINDOW {
            let sent = match pull {
                None => client.try_draw().map(drop),
                Some(len) => client.try_pull(len).map(drop),
            };
            match sent {
                Ok(_ticket) => submitted += 1,
                Err(DrawError::Full) => break,
                Err(_) => failures += 1,
            }
        }
        client.drain(|_, result| {
            match result {
                Ok(outcome) => {
                    if outcome.item_id(&mut ids).is_none_or(str::is_empty) {
                        unnamed += 1;
                    }
                }
                Err(_) => failures += 1,
            }
            delivered += 1;
        });
    }
    assert_eq!(failures, 0);
    assert_eq!(unnamed, 0);
    delivered
}

/// Blocking pulls of [`PULL`], each outcome read through the `Pull` iterator and named.
/// Returns how many draws were acknowledged and named.
fn blocking_pulls(client: &mut rewardpool::Client, pulls: u64) -> u64 {
    let mut ids = client.item_ids();
    let mut named = 0;
    for _ in 0..pulls {
        if let Ok(pull) = client.pull(PULL) {
            for outcome in pull {
                if outcome.item_id(&mut ids).is_some() {
                    named += 1;
                }
            }
        }
    }
    named
}

/// Pipelined keyed pulls of [`PULL`] with keys `first..first + pulls`, then the same keys
/// again (retries: replayed from the key window, nothing drawn). Returns (draws delivered,
/// of them replayed).
fn keyed_pulls(client: &mut rewardpool::Client, first: u128, pulls: u64) -> (u64, u64) {
    let (mut delivered, mut replayed, mut failures) = (0, 0, 0);
    for _round in 0..2 {
        let mut submitted = 0_u64;
        let target = delivered + pulls * u64::from(PULL);
        while delivered < target {
            while submitted < pulls && client.outstanding() < WINDOW {
                match client.try_pull_keyed(PULL, first + u128::from(submitted)) {
                    Ok(_ticket) => submitted += 1,
                    Err(DrawError::Full) => break,
                    Err(_) => failures += 1,
                }
            }
            client.drain(|_, result| {
                match result {
                    Ok(outcome) => replayed += u64::from(outcome.replayed),
                    Err(_) => failures += 1,
                }
                delivered += 1;
            });
        }
    }
    // A keyed single draw and its retry, blocking.
    for key in [first + u128::from(pulls), first + u128::from(pulls)] {
        match client.draw_keyed(key) {
            Ok(outcome) => replayed += u64::from(outcome.replayed),
            Err(_) => failures += 1,
        }
    }
    assert_eq!(failures, 0);
    (delivered, replayed)
}

/// One test, run in sequence: the count is process-wide, so scenarios must not overlap.
/// Without libtest's harness (`harness = false` in Cargo.toml): the harness's own thread
/// allocated while armed when a run passed 60 s on a loaded machine (its "has been running
/// for over 60 seconds" notice), failing a count that the engine had kept at zero.
fn main() {
    no_allocation_in_steady_state();
    println!("alloc: no allocation in steady state: ok");
}

fn no_allocation_in_steady_state() {
    memory_journal();
    for durability in [Durability::Buffered, Durability::Sync] {
        durable_log(durability);
    }
    two_pools_in_a_host();
    // Last and short: past 60 s the test harness allocates for its "running for over 60
    // seconds" notice, which a loaded machine can reach.
    for durability in [Durability::Buffered, Durability::Sync] {
        keyed_journal(durability);
    }
}

/// The WAL journal driven directly with keyed requests (`append_key`, as the core loop
/// calls it for a keyed draw or pull): groups of keyed pulls of 10 and keyed single draws
/// are buffered and written as batch frames without allocating.
fn keyed_journal(durability: Durability) {
    use rewardpool::journal::Space;
    use rewardpool::store::open_journal;
    use rewardpool::{Journal as _, RequestId};

    let items = [ItemSpec::new("silver", 5_000_000, 10), ItemSpec::new("mud", -1, 100)];
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let storage = os_storage(dir.path(), durability);
    let wal = WalOptions { durability, segment_size_bytes: SEGMENT_BYTES, ..WalOptions::default() };
    let (mut pool, mut journal) = open_journal(storage, &items, &wal, Some(5)).unwrap();
    let mut key = 0_u128;
    let mut group = |pool: &mut Pool, journal: &mut rewardpool::wal::WalJournal| {
        journal.reserve(Space::Draws(100), pool).unwrap();
        for request in 0..19 {
            key += 1;
            let count = if request % 2 == 0 { 10 } else { 1 };
            journal.append_key(key, count).unwrap();
            for _ in 0..count {
                journal.append_draw(pool.draw()).unwrap();
            }
        }
        journal.commit(RequestId(pool.last_request_id().0)).unwrap()
    };
    for _ in 0..100 {
        group(&mut pool, &mut journal);
    }
    wait_for_spare(durability);
    std::thread::sleep(Duration::from_millis(100));

    ALLOCS.store(0, Ordering::SeqCst);
    CAPTURE.store(true, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    const GROUPS: usize = 2_000;
    let mut last = rewardpool::journal::GroupSeq(0);
    for _ in 0..GROUPS {
        last = group(&mut pool, &mut journal);
    }
    while journal.durable().unwrap() < last {
        std::hint::spin_loop();
    }
    ARMED.store(false, Ordering::SeqCst);
    CAPTURE.store(false, Ordering::SeqCst);
    let allocs = ALLOCS.load(Ordering::SeqCst);
    journal.close(&pool).unwrap();
    eprintln!("{durability}: {GROUPS} groups of keyed requests: {allocs} allocations");
    if allocs != 0 {
        let first = FIRST.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        panic!("{durability}: {allocs} allocations in keyed groups; first:\n{first}");
    }
}

/// Two pools opened by a `Host` (each its own engine, placed by the core plan): once each
/// name is resolved to its engine and a client, draws alternating between the pools
/// allocate nothing (no name is looked up per draw).
fn two_pools_in_a_host() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let yaml = format!(
        "working_dir: \"{}\"\nwal:\n  durability: memory\npools:\n  - name: a\n    catalog:\n      \
         - {{ item_id: gold, quantity: 5000000, probability: 1 }}\n  - name: b\n    catalog:\n      \
         - {{ item_id: mud, quantity: -1, probability: 1 }}\n",
        dir.path().display()
    );
    let config = rewardpool::Config::from_yaml_str(&yaml).unwrap();
    let host = rewardpool::Host::open(&config).unwrap();
    let (a, b) = (host.pool("a").unwrap(), host.pool("b").unwrap());
    let (mut ca, mut cb) = (a.client().unwrap(), b.client().unwrap());
    assert_eq!(pipelined(&mut ca, 20_000) + pipelined(&mut cb, 20_000), 40_000);
    std::thread::sleep(Duration::from_millis(50));

    ALLOCS.store(0, Ordering::SeqCst);
    CAPTURE.store(true, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let mut acknowledged = 0;
    for _ in 0..20 {
        acknowledged += pipelined(&mut ca, 10_000) + pipelined(&mut cb, 10_000);
    }
    ARMED.store(false, Ordering::SeqCst);
    CAPTURE.store(false, Ordering::SeqCst);
    let allocs = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(acknowledged, 400_000);
    drop((ca, cb));
    for (name, result) in host.shutdown() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    eprintln!("two pools: {acknowledged} draws: {allocs} allocations");
    if allocs != 0 {
        let first = FIRST.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        panic!("two pools: {allocs} allocations during {acknowledged} draws; first:\n{first}");
    }
}

/// The log's storage in `dir`, as `store::open_engine` sets it up for `durability`.
fn os_storage(dir: &std::path::Path, durability: Durability) -> std::sync::Arc<OsStorage> {
    let writes = match durability {
        Durability::Sync => SegmentWrites::Staged,
        _ => SegmentWrites::Mapped,
    };
    std::sync::Arc::new(OsStorage::new(dir).unwrap().with_segment_writes(writes))
}

/// The durable log: 200k draws inside one segment (rotation allocates a snapshot buffer by
/// design, so it is kept out of the measured window).
fn durable_log(durability: Durability) {
    let items = [ItemSpec::new("silver", 5_000_000, 10), ItemSpec::new("mud", -1, 100)];
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let storage = os_storage(dir.path(), durability);
    let wal = WalOptions { durability, segment_size_bytes: SEGMENT_BYTES, ..WalOptions::default() };
    let config =
        EngineConfig { ring_capacity: 512, core: CorePin::Unpinned, ..EngineConfig::default() };
    let engine = open_engine_on(storage.clone(), &items, &wal, config, Some(3)).unwrap();
    let mut client = engine.client().unwrap();
    assert_eq!(pipelined(&mut client, 20_000), 20_000);
    assert_eq!(pipelined_pulls(&mut client, 100), 1_000);
    assert_eq!(blocking_pulls(&mut client, 10), 100);
    assert_eq!(keyed_pulls(&mut client, 1 << 100, 100), (2_000, 1_001));
    // Wait for the helper threads' start-up work: the active and the spare segment
    // pre-faulted (fully resident), so the preparer is parked before the count is armed. On
    // a slow CI disk this took longer than a fixed sleep once.
    wait_for_spare(durability);
    std::thread::sleep(Duration::from_millis(100));
    client.draw().unwrap();

    ALLOCS.store(0, Ordering::SeqCst);
    CAPTURE.store(true, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let mut acknowledged = pipelined(&mut client, 200_000);
    let pulled = pipelined_pulls(&mut client, 20_000) + blocking_pulls(&mut client, 500);
    let keyed = keyed_pulls(&mut client, 2 << 100, 1_000);
    ARMED.store(false, Ordering::SeqCst);
    CAPTURE.store(false, Ordering::SeqCst);
    let allocs = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(acknowledged, 200_000);
    assert_eq!(pulled, 205_000);
    assert_eq!(keyed, (20_000, 10_001));
    acknowledged += pulled;
    drop(client);
    engine.shutdown().unwrap();
    eprintln!("{durability}: {acknowledged} draws (half in pulls of {PULL}): {allocs} allocations");
    if allocs != 0 {
        let first = FIRST.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        panic!("{durability}: {allocs} allocations during {acknowledged} draws; first:\n{first}");
    }
}

/// Mappings of `size_kib` KiB in this process with every page resident
/// (`/proc/self/smaps`: `Rss` equal to `Size`). The active segment and the spare, once the
/// preparer has pre-faulted both, are two of them (a file mapping under `buffered`, an
/// anonymous staging buffer under `sync`).
/// Waits until the active and the spare segment are pre-faulted (two fully resident
/// segment-sized mappings), so the preparer is parked before the count is armed. Reading
/// that from `/proc/self/smaps` is a heuristic: the kernel may merge a staging buffer's
/// mapping with an adjacent anonymous one (the key window) into a VMA that is not a
/// multiple of the segment size, and then it never shows. So after 20 s (pre-faulting
/// 64 MiB takes well under a second even on a busy machine) it goes on: an allocation the
/// preparer still made would then fail the test, never pass it.
fn wait_for_spare(durability: Durability) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while resident_mappings(SEGMENT_BYTES >> 10) < 2 {
        if Instant::now() > deadline {
            eprintln!(
                "{durability}: the spare segment's mapping is not visible in smaps; going on"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn resident_mappings(size_kib: u64) -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return usize::MAX;
    };
    let mut size = None;
    let mut count = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("Size:") => size = fields.next().and_then(|v| v.parse::<u64>().ok()),
            Some("Rss:") => {
                let rss = fields.next().and_then(|v| v.parse::<u64>().ok());
                // Adjacent anonymous mappings with the same flags are merged into one
                // VMA (two staging buffers mapped back to back show as one 128 MiB entry):
                // count whole segments' worth of fully resident memory.
                if let (Some(s), Some(r)) = (size, rss) {
                    if s > 0 && s % size_kib == 0 && r == s {
                        count += (s / size_kib) as usize;
                    }
                }
            }
            _ => {}
        }
    }
    count
}

fn memory_journal() {
    let draws: u64 = std::env::var("REWARDPOOL_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_u64)
        .max(1)
        * 1_000_000;
    let capture = std::env::var_os("REWARDPOOL_ALLOC_BACKTRACE").is_some();

    let items = [
        ItemSpec::new("gold", 1_000, 1),
        ItemSpec::new("silver", 5_000_000, 10),
        ItemSpec::new("mud", -1, 100),
    ];
    let pool = Pool::new(&items, Rng::from_seed(11)).unwrap();
    let config =
        EngineConfig { ring_capacity: 512, core: CorePin::Unpinned, ..EngineConfig::default() };
    let engine = Engine::start(pool, MemoryJournal::new(), config).unwrap();
    let mut client = engine.client().unwrap();

    // Warm-up: registration, first passes, both draw styles, and idle phases of the core
    // (spin, yield, park) so that every lazily initialised path has run once.
    assert_eq!(pipelined(&mut client, 20_000), 20_000);
    for _ in 0..1_000 {
        client.draw().unwrap();
    }
    assert_eq!(pipelined_pulls(&mut client, 1_000), 10_000);
    assert_eq!(blocking_pulls(&mut client, 100), 1_000);
    assert_eq!(keyed_pulls(&mut client, 1 << 100, 1_000), (20_000, 10_001));
    std::thread::sleep(Duration::from_millis(50));
    client.draw().unwrap();
    let _ = engine.state().unwrap();
    let meter = engine.meter();

    if capture {
        CAPTURE.store(true, Ordering::Relaxed);
    }
    let started = Instant::now();
    ARMED.store(true, Ordering::SeqCst);
    let blocking = draws / 10;
    let mut acknowledged = pipelined(&mut client, draws - blocking);
    // What a scrape reads per pool: a few loads into a `Copy` value.
    let reading = meter.read();
    for _ in 0..blocking {
        if let Ok(outcome) = client.draw() {
            if outcome.item.and_then(|i| client.item_id(i)).is_some() {
                acknowledged += 1;
            }
        }
    }
    let pulls = draws / u64::from(PULL) / 2;
    let pulled =
        pipelined_pulls(&mut client, pulls - pulls / 10) + blocking_pulls(&mut client, pulls / 10);
    let keyed = keyed_pulls(&mut client, 2 << 100, pulls / 10);
    ARMED.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let allocs = ALLOCS.load(Ordering::SeqCst);

    assert_eq!(acknowledged, draws);
    assert!(reading.draws_committed >= 20_000 + draws - blocking, "{reading:?}");
    assert_eq!(reading.group_size.sum(), reading.draws_committed, "{reading:?}");
    assert_eq!(pulled, pulls * u64::from(PULL));
    assert_eq!(keyed, (pulls / 10 * u64::from(PULL) * 2, pulls / 10 * u64::from(PULL) + 1));
    let state = engine.shutdown().unwrap();
    let keyed_drawn = (10_000 + 1) + (pulls / 10 * u64::from(PULL) + 1);
    assert_eq!(state.last_request_id.0, 20_000 + 1_000 + 11_000 + 1 + draws + pulled + keyed_drawn);
    eprintln!("{draws} draws and {pulled} in pulls of {PULL} in {elapsed:?}: {allocs} allocations");
    if allocs != 0 {
        let first = FIRST
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| "(set REWARDPOOL_ALLOC_BACKTRACE=1 for a backtrace)".into());
        panic!("{allocs} allocations during {draws} draws; first:\n{first}");
    }
}
