//! In-memory [`Storage`] with fault injection, for crash and failure tests.
//!
//! Each file has its live bytes (what a process sees, like the page cache) and its durable
//! bytes (what survives power loss: updated by `sync_range` / `write_synced`). Directory
//! entries likewise have a live and a durable view, the latter updated by `sync_dir`.
//! [`FaultyStorage::crash`] builds the storage a restarted process would find.
//!
//! Faults: fail the n-th sync, fail every operation after a countdown ("crash after N
//! operations", with [`FaultyStorage::ops`] counting a run's operations and
//! [`FaultyStorage::trace_ops`] naming them), and ENOSPC when creating segments.
//! Directory operations since the last `sync_dir` are remembered in order, so a
//! [`CrashMode::ReorderedPowerLoss`] can keep any subset of them.
//!
//! Segments are written through like a shared mapping ([`FaultyStorage::new`]), or staged
//! like `SegmentWrites::Staged` ([`FaultyStorage::staged`]): the writer fills a private
//! buffer, `write_range` copies ranges into the file, and `sync_range` does that and then
//! makes the whole file durable, as fdatasync does.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rkyv::util::AlignedVec;

use super::{DirLock, SegmentMap, Storage};

/// The page size torn power losses keep or lose whole.
const PAGE: usize = 4096;
/// The unit a device writes atomically: torn power losses keep or lose a sector whole.
const SECTOR: usize = 512;

/// What survives [`FaultyStorage::crash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// A process crash (kill -9): everything written survives, synced or not.
    Process,
    /// Power loss: only synced bytes and synced directory entries survive.
    PowerLoss,
    /// Power loss with torn writes: of the unsynced bytes the device kept an arbitrary part
    /// chosen by the seed. Per 4 KiB page a coin says whether the page went whole (then
    /// another coin: kept or lost) or torn inside: then each of its 512-byte sectors is kept
    /// or lost on its own coin (a device writes a sector atomically, a page not).
    TornPowerLoss(u64),
    /// Power loss that also reorders what was not synced: like `TornPowerLoss` for file
    /// pages, and the directory operations since the last directory sync (creations,
    /// renames, removals) kept as an arbitrary subset chosen by the seed, each applied in
    /// its order when kept (a rename whose source is not there is dropped).
    ReorderedPowerLoss(u64),
}

/// One file: a fixed heap region written through a raw pointer, plus its durable image.
struct MemFile {
    ptr: *mut u8,
    len: usize,
    durable: Mutex<Vec<u8>>,
}

// SAFETY: `ptr` owns a heap allocation of `len` bytes that lives as long as the MemFile.
// Concurrent access follows the SegmentMap contract (one writer per range; a range is read
// for syncing only after its writer is done), the same discipline as a shared mmap.
#[allow(unsafe_code)]
unsafe impl Send for MemFile {}
// SAFETY: as for Send; the durable image is behind a Mutex.
#[allow(unsafe_code)]
unsafe impl Sync for MemFile {}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFile").field("len", &self.len).finish_non_exhaustive()
    }
}

impl MemFile {
    fn new(bytes: Vec<u8>, durable: Vec<u8>) -> Arc<MemFile> {
        let len = bytes.len();
        let ptr = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
        Arc::new(MemFile { ptr, len, durable: Mutex::new(durable) })
    }

    fn live(&self) -> Vec<u8> {
        // SAFETY: `ptr` is valid for `len` bytes (see MemFile); callers read a file only
        // when no writer is active on it (after the engine stopped), per the test protocol.
        #[allow(unsafe_code)]
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        bytes.to_vec()
    }

    fn durable(&self) -> MutexGuard<'_, Vec<u8>> {
        self.durable.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice in `new`, and this is
        // the only place that frees it.
        #[allow(unsafe_code)]
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

#[derive(Debug)]
struct MemSegment {
    file: Arc<MemFile>,
    storage: Arc<Inner>,
}

// SAFETY: `file` owns a heap region of `file.len` bytes (MemFile), kept alive by the Arc for
// the segment's life: `as_ptr()` is its first byte and `len()` its fixed length.
#[allow(unsafe_code)]
unsafe impl SegmentMap for MemSegment {
    fn len(&self) -> usize {
        self.file.len
    }

    fn as_ptr(&self) -> *mut u8 {
        self.file.ptr
    }

    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.storage.sync_op("sync_range", "")?;
        let end = offset.saturating_add(len).min(self.file.len);
        let offset = offset.min(end);
        // SAFETY: `offset..end` is inside the allocation; the log syncs only ranges its
        // writer has finished (SegmentMap contract), so nobody writes them concurrently.
        #[allow(unsafe_code)]
        let live = unsafe { std::slice::from_raw_parts(self.file.ptr.add(offset), end - offset) };
        self.file.durable()[offset..end].copy_from_slice(live);
        Ok(())
    }
}

/// A staged segment: the writer's private buffer, and the file that `write_range` fills.
#[derive(Debug)]
struct StagedMemSegment {
    buf: Arc<MemFile>,
    file: Arc<MemFile>,
    storage: Arc<Inner>,
}

// SAFETY: as for MemSegment, with the writer's buffer `buf` (kept alive by its Arc): `as_ptr()`
// is its first byte and `len()` its fixed length.
#[allow(unsafe_code)]
unsafe impl SegmentMap for StagedMemSegment {
    fn len(&self) -> usize {
        self.buf.len
    }

    fn as_ptr(&self) -> *mut u8 {
        self.buf.ptr
    }

    fn write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.storage.op("write_range", "")?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.buf.len)
            .ok_or_else(|| io::Error::other("write range beyond the segment"))?;
        // SAFETY: `offset..end` is inside both allocations (same length, checked above).
        // The writer finished this range of `buf` (SegmentMap contract), and the file's
        // live bytes are written only here, by the one thread that owns this segment's
        // syncs at a time, so neither side is written concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.buf.ptr.add(offset),
                self.file.ptr.add(offset),
                end - offset,
            );
        }
        Ok(())
    }

    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.write_range(offset, len)?;
        self.storage.sync_op("fdatasync", "")?;
        // fdatasync: everything written to the file so far is durable.
        let live = self.file.live();
        *self.file.durable() = live;
        Ok(())
    }

    fn writes_through(&self) -> bool {
        false
    }
}

#[derive(Debug, Default)]
struct Dir {
    live: BTreeMap<String, Arc<MemFile>>,
    durable: BTreeMap<String, Arc<MemFile>>,
    /// Directory operations since the last `sync_dir`, in order: a reordering power loss
    /// keeps an arbitrary subset of them.
    pending: Vec<DirOp>,
    locked: bool,
}

/// A directory operation not yet made durable by `sync_dir`.
#[derive(Debug, Clone)]
enum DirOp {
    Create(String, Arc<MemFile>),
    Rename(String, String),
    Remove(String),
}

#[derive(Debug, Default)]
struct Inner {
    dir: Mutex<Dir>,
    syncs: AtomicU64,
    fail_sync_at: AtomicU64,
    ops_left: AtomicU64,
    countdown: AtomicBool,
    enospc: AtomicBool,
    sync_delay_us: AtomicU64,
    syncs_held: AtomicBool,
    /// New segments are staged (see the module docs).
    staged: AtomicBool,
    /// Operations performed so far (counted whether or not a countdown runs).
    ops: AtomicU64,
    /// When set, each operation's kind and file name is appended to `trace`.
    tracing: AtomicBool,
    trace: Mutex<Vec<String>>,
}

impl Inner {
    fn dir(&self) -> MutexGuard<'_, Dir> {
        self.dir.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an operation (`what` on file `name`) against the countdown. Taking one off
    /// the countdown is atomic, so concurrent threads never both take its last operation.
    fn op(&self, what: &str, name: &str) -> io::Result<()> {
        if self.countdown.load(Ordering::SeqCst) {
            let took = self
                .ops_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1));
            if took.is_err() {
                return Err(io::Error::other("injected crash: storage is gone"));
            }
        }
        self.ops.fetch_add(1, Ordering::SeqCst);
        if self.tracing.load(Ordering::SeqCst) {
            let line = if name.is_empty() { what.to_owned() } else { format!("{what} {name}") };
            self.trace.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
        }
        Ok(())
    }

    fn sync_op(&self, what: &str, name: &str) -> io::Result<()> {
        self.op(what, name)?;
        // A held device: syncs wait (bounded, so a forgotten release cannot hang a test).
        let held_since = std::time::Instant::now();
        while self.syncs_held.load(Ordering::SeqCst) && held_since.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let delay = self.sync_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay));
        }
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_sync_at.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected sync failure (EIO)"));
        }
        Ok(())
    }
}

/// In-memory storage with fault injection. Cloning shares the same files.
#[derive(Debug, Clone, Default)]
pub struct FaultyStorage {
    inner: Arc<Inner>,
}

struct MemLock {
    storage: Arc<Inner>,
}

impl fmt::Debug for MemLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemLock")
    }
}

impl DirLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.storage.dir().locked = false;
    }
}

impl FaultyStorage {
    /// An empty directory.
    #[must_use]
    pub fn new() -> FaultyStorage {
        FaultyStorage::default()
    }

    /// An empty directory whose new segments are staged like `SegmentWrites::Staged`.
    #[must_use]
    pub fn staged() -> FaultyStorage {
        let storage = FaultyStorage::default();
        storage.inner.staged.store(true, Ordering::SeqCst);
        storage
    }

    /// The `n`-th sync from now on (1 = the next) fails with an I/O error.
    pub fn fail_sync_after(&self, n: u64) {
        let done = self.inner.syncs.load(Ordering::SeqCst);
        self.inner.fail_sync_at.store(done + n, Ordering::SeqCst);
    }

    /// Every operation after the next `n` fails, as if the machine died.
    pub fn crash_after_ops(&self, n: u64) {
        self.inner.ops_left.store(n, Ordering::SeqCst);
        self.inner.countdown.store(true, Ordering::SeqCst);
    }

    /// Every sync takes this long (a slow device widens the window in which an early
    /// acknowledgement would show).
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner.sync_delay_us.store(us, Ordering::SeqCst);
    }

    /// While held, every sync waits (for at most 30 s): nothing new becomes durable, so
    /// nothing new may be acknowledged in `sync` mode.
    pub fn hold_syncs(&self, held: bool) {
        self.inner.syncs_held.store(held, Ordering::SeqCst);
    }

    /// Creating segments fails with ENOSPC while `full`.
    pub fn set_disk_full(&self, full: bool) {
        self.inner.enospc.store(full, Ordering::SeqCst);
    }

    /// Storage operations performed so far (reads, writes, syncs, renames, removals,
    /// creations, directory syncs): a crash-at-every-step test counts a run's operations
    /// with this, then crashes after each count in turn.
    #[must_use]
    pub fn ops(&self) -> u64 {
        self.inner.ops.load(Ordering::SeqCst)
    }

    /// Starts (or stops) recording each operation's kind and file name.
    pub fn trace_ops(&self, on: bool) {
        self.inner.tracing.store(on, Ordering::SeqCst);
    }

    /// The operations recorded since tracing started, emptied by the call.
    #[must_use]
    pub fn take_trace(&self) -> Vec<String> {
        std::mem::take(
            &mut *self.inner.trace.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Syncs performed so far.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::SeqCst)
    }

    /// The storage a restarted process finds after a crash of the given kind. Call it once
    /// the writers are stopped (engine shut down or failed).
    #[must_use]
    pub fn crash(&self, mode: CrashMode) -> FaultyStorage {
        let dir = self.inner.dir();
        let mut rng = match mode {
            CrashMode::TornPowerLoss(seed) | CrashMode::ReorderedPowerLoss(seed) => seed | 1,
            _ => 1,
        };
        let mut coin = move || {
            // xorshift64: a cheap, seeded coin.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng & 1 == 1
        };
        let mut reordered;
        let entries = match mode {
            CrashMode::Process => &dir.live,
            CrashMode::ReorderedPowerLoss(_) => {
                reordered = dir.durable.clone();
                for op in &dir.pending {
                    if !coin() {
                        continue;
                    }
                    match op {
                        DirOp::Create(name, file) => {
                            reordered.insert(name.clone(), Arc::clone(file));
                        }
                        DirOp::Rename(from, to) => {
                            if let Some(file) = reordered.remove(from) {
                                reordered.insert(to.clone(), file);
                            }
                        }
                        DirOp::Remove(name) => {
                            reordered.remove(name);
                        }
                    }
                }
                &reordered
            }
            _ => &dir.durable,
        };
        let mut files = BTreeMap::new();
        for (name, file) in entries {
            let bytes = match mode {
                CrashMode::Process => file.live(),
                CrashMode::PowerLoss => file.durable().clone(),
                CrashMode::TornPowerLoss(_) | CrashMode::ReorderedPowerLoss(_) => {
                    let live = file.live();
                    let mut kept = file.durable().clone();
                    for (page, chunk) in live.chunks(PAGE).enumerate() {
                        let at = page * PAGE;
                        // Seeded coins: the page whole (kept or lost), or torn by sector.
                        if coin() {
                            if coin() {
                                kept[at..at + chunk.len()].copy_from_slice(chunk);
                            }
                            continue;
                        }
                        for (i, sector) in chunk.chunks(SECTOR).enumerate() {
                            if coin() {
                                let at = at + i * SECTOR;
                                kept[at..at + sector.len()].copy_from_slice(sector);
                            }
                        }
                    }
                    kept
                }
            };
            files.insert(name.clone(), MemFile::new(bytes.clone(), bytes));
        }
        let inner = Inner::default();
        *inner.dir() =
            Dir { live: files.clone(), durable: files, pending: Vec::new(), locked: false };
        inner.staged.store(self.inner.staged.load(Ordering::SeqCst), Ordering::SeqCst);
        FaultyStorage { inner: Arc::new(inner) }
    }

    /// Live bytes of a file (for tests that damage files on purpose).
    #[must_use]
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        self.inner.dir().live.get(name).map(|f| f.live())
    }

    /// Replaces a file's bytes, live and durable (for tests that damage files on purpose).
    pub fn put_file(&self, name: &str, bytes: Vec<u8>) {
        let file = MemFile::new(bytes.clone(), bytes);
        let mut dir = self.inner.dir();
        dir.live.insert(name.to_owned(), Arc::clone(&file));
        dir.durable.insert(name.to_owned(), file);
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file"))
}

impl Storage for FaultyStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.op("list", "")?;
        Ok(self.inner.dir().live.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<AlignedVec<16>> {
        self.inner.op("read", name)?;
        let file = self.inner.dir().live.get(name).cloned().ok_or_else(|| not_found(name))?;
        let mut buf = AlignedVec::<16>::new();
        buf.extend_from_slice(&file.live());
        Ok(buf)
    }

    fn read_prefix(&self, name: &str, len_max: usize) -> io::Result<(AlignedVec<16>, u64)> {
        let all = self.read(name)?;
        let len = all.len().min(len_max);
        let mut buf = AlignedVec::<16>::with_capacity(len);
        buf.extend_from_slice(&all[..len]);
        Ok((buf, all.len() as u64))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let all = self.read(name)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let n = buf.len().min(all.len() - start);
        buf[..n].copy_from_slice(&all[start..start + n]);
        Ok(n)
    }

    fn write_synced(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.inner.sync_op("write_synced", name)?;
        let file = MemFile::new(bytes.to_vec(), bytes.to_vec());
        let mut dir = self.inner.dir();
        dir.live.insert(name.to_owned(), Arc::clone(&file));
        dir.pending.push(DirOp::Create(name.to_owned(), file));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.op("rename", from)?;
        let mut dir = self.inner.dir();
        let file = dir.live.remove(from).ok_or_else(|| not_found(from))?;
        dir.live.insert(to.to_owned(), file);
        dir.pending.push(DirOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.op("remove", name)?;
        let mut dir = self.inner.dir();
        dir.live.remove(name).ok_or_else(|| not_found(name))?;
        dir.pending.push(DirOp::Remove(name.to_owned()));
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_op("sync_dir", "")?;
        let mut dir = self.inner.dir();
        dir.durable = dir.live.clone();
        dir.pending.clear();
        Ok(())
    }

    fn create_segment(&self, name: &str, size: u64) -> io::Result<Arc<dyn SegmentMap>> {
        self.inner.op("create_segment", name)?;
        if self.inner.enospc.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let len = usize::try_from(size).map_err(|_| io::Error::other("segment too large"))?;
        let mut dir = self.inner.dir();
        if dir.live.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, name.to_owned()));
        }
        let file = MemFile::new(vec![0; len], vec![0; len]);
        dir.live.insert(name.to_owned(), Arc::clone(&file));
        dir.pending.push(DirOp::Create(name.to_owned(), Arc::clone(&file)));
        let storage = Arc::clone(&self.inner);
        if self.inner.staged.load(Ordering::SeqCst) {
            // Not zeroed: the real staging buffers are reused and hold an earlier segment's
            // frames, so bytes past the writer's cursor must never reach the file.
            let buf = MemFile::new(vec![0xa5; len], Vec::new());
            return Ok(Arc::new(StagedMemSegment { buf, file, storage }));
        }
        Ok(Arc::new(MemSegment { file, storage }))
    }

    fn open_segment(&self, name: &str) -> io::Result<Arc<dyn SegmentMap>> {
        self.inner.op("open_segment", name)?;
        let file = self.inner.dir().live.get(name).cloned().ok_or_else(|| not_found(name))?;
        Ok(Arc::new(MemSegment { file, storage: Arc::clone(&self.inner) }))
    }

    fn resume_segment(&self, name: &str) -> io::Result<Arc<dyn SegmentMap>> {
        if !self.inner.staged.load(Ordering::SeqCst) {
            return self.open_segment(name);
        }
        self.inner.op("resume_segment", name)?;
        let file = self.inner.dir().live.get(name).cloned().ok_or_else(|| not_found(name))?;
        // Like `OsStorage`: a fresh staging buffer, stale (0xa5) where the file already
        // holds the segment's frames, which must never be written back.
        let buf = MemFile::new(vec![0xa5; file.len], Vec::new());
        Ok(Arc::new(StagedMemSegment { buf, file, storage: Arc::clone(&self.inner) }))
    }

    fn lock(&self, _exclusive: bool) -> io::Result<Box<dyn DirLock>> {
        let mut dir = self.inner.dir();
        if dir.locked {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked"));
        }
        dir.locked = true;
        Ok(Box::new(MemLock { storage: Arc::clone(&self.inner) }))
    }

    fn describe(&self, name: &str) -> String {
        format!("mem:{name}")
    }
}
