//! [`Storage`] on the real file system: preallocated segments (fallocate; zeros written for
//! `Staged` ones, and where fallocate is not supported), mmap'd or staged; pread-style reads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapRaw;
use rkyv::util::AlignedVec;

use super::{DirLock, SegmentMap, Storage};

/// The operating system's files under one directory (created if missing).
#[derive(Debug, Clone)]
pub struct OsStorage {
    dir: PathBuf,
    writes: SegmentWrites,
    /// Staging buffers of retired staged segments, reused by the next ones.
    staging: Arc<StagingPool>,
}

/// How new segments ([`Storage::create_segment`]) take the core thread's frames.
///
/// ```text
///             core writes frames into     write_range / sync_range       after kill -9
/// Mapped      a shared mapping of the     nothing / msync(MS_SYNC)       written frames
///             file (the page cache)       of the range                   are in the file
/// Staged      a private anonymous         pwrite of the range / pwrite,  only written
///             mapping of the same size    then fdatasync                 ranges are
/// ```
///
/// Under `sync` durability every group is written back at once, and writing back a page
/// that is mapped writable makes the kernel write-protect it: one TLB shoot-down (an
/// inter-processor interrupt, costly in a VM) per page per sync, and a page fault on the
/// core thread at its next write to that page. Profiling the `sync` bench put those at 17 %
/// of all CPU time. `Staged` keeps the file's pages unmapped, so writeback touches no page
/// table; the price is one copy of each synced range (a `memcpy`, ~1 ns per draw) and the
/// staging memory: one segment size for the active segment, one for the spare, up to three
/// retired ones whose close is pending (two queued for the preparer, one closing), and up to
/// two retired buffers (`STAGING_KEPT`) kept for reuse while the storage lives (at the
/// 64 MiB default, usually 256 MiB and at most 448 MiB besides the page cache).
///
/// `buffered` durability acknowledges a frame once it is in the page cache: on `Mapped`
/// segments as soon as its group is committed, on `Staged` ones once the flusher has
/// written the group (`write_range`). `Durability::plan` (in `wal`) picks `Mapped` for it: in
/// interleaved runs (buffered, group 1000) the two had the same throughput (median 8.6 vs
/// 8.3 M draws/s), and in open loop at 5 M draws/s `Mapped` answered at a p50 of ~2 µs
/// against ~95 µs (every acknowledgement waits for the flusher thread), p99 8–25 ms against
/// 7–17 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentWrites {
    /// A shared, writable mapping of the file; `msync` makes ranges durable.
    #[default]
    Mapped,
    /// A private staging buffer; `pwrite` + `fdatasync` make ranges durable. The file is
    /// zero-filled when created, so no sync has to convert unwritten extents.
    Staged,
}

impl OsStorage {
    /// Storage in `dir`, creating the directory if needed.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(dir: &Path) -> io::Result<OsStorage> {
        fs::create_dir_all(dir)?;
        Ok(OsStorage {
            dir: dir.to_path_buf(),
            writes: SegmentWrites::default(),
            staging: Arc::default(),
        })
    }

    /// Storage in an existing `dir` (read-only commands do not create directories).
    ///
    /// # Errors
    /// `dir` is not a directory.
    pub fn existing(dir: &Path) -> io::Result<OsStorage> {
        if !dir.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(OsStorage {
            dir: dir.to_path_buf(),
            writes: SegmentWrites::default(),
            staging: Arc::default(),
        })
    }

    /// The same storage, creating segments written the given way (segments opened with
    /// [`Storage::open_segment`], for header rewrites and repairs, are always mapped).
    #[must_use]
    pub fn with_segment_writes(mut self, writes: SegmentWrites) -> OsStorage {
        self.writes = writes;
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// An mmap'd segment file.
#[derive(Debug)]
struct MappedSegment {
    map: MmapRaw,
    // Kept open so the mapping's file stays the same inode for the map's lifetime.
    _file: File,
}

// SAFETY: `map` is a shared mapping of the whole file, kept (with the file) for the
// segment's life: `as_ptr()` is its first byte and `len()` its fixed length.
#[allow(unsafe_code)]
unsafe impl SegmentMap for MappedSegment {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()> {
        // msync(MS_SYNC); MS_ASYNC writes nothing on Linux (MEASURED.md).
        self.map.flush_range(offset, len)
    }

    fn prefault(&self) {
        // MADV_POPULATE_WRITE faults every page in writable, so the writer never takes a
        // 2–5 µs fault on a fresh page (MEASURED.md). Best effort: older kernels refuse it.
        #[cfg(target_os = "linux")]
        let _ = self.map.advise(memmap2::Advice::PopulateWrite);
    }

    fn retire(&self) {
        // SAFETY: MADV_DONTNEED on a shared file mapping only unmaps pages: dirty pages
        // keep their data in the page cache (their dirty state moves from the page table to
        // the page) and later accesses fault the same contents back in, so no byte anyone
        // wrote is lost or changed. No reference into the map is alive across this call:
        // all writes go through raw pointers (`write_at`), and the core has moved to the
        // next segment before a segment is retired.
        #[allow(unsafe_code)]
        let _ = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }
}

/// Staging buffers kept for reuse: a fresh anonymous mapping costs a zeroed page per 4 KiB
/// (64 MiB of `memset` per segment, 6 % of the `sync` bench's CPU); a retired segment's
/// buffer is already resident. Its stale bytes never reach a file: the writer writes every
/// byte below its cursor, and only synced ranges below the cursor are written out.
#[derive(Debug)]
struct StagingPool {
    free: std::sync::Mutex<Vec<MmapRaw>>,
}

impl Default for StagingPool {
    fn default() -> StagingPool {
        // Room reserved up front: giving a buffer back (possibly on the core thread, when
        // it drops the last reference at a rotation) never allocates.
        StagingPool { free: std::sync::Mutex::new(Vec::with_capacity(STAGING_KEPT)) }
    }
}

/// Buffers kept at most (the active segment's and the spare's are in use besides).
const STAGING_KEPT: usize = 2;

impl StagingPool {
    /// A buffer of exactly `len` bytes: a kept one, or a new anonymous mapping.
    fn take(&self, len: usize) -> io::Result<MmapRaw> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = free.iter().position(|b| b.len() == len) {
            return Ok(free.swap_remove(at));
        }
        drop(free);
        Ok(MmapRaw::from(memmap2::MmapOptions::new().len(len).map_anon()?))
    }

    fn give_back(&self, buf: MmapRaw) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < STAGING_KEPT {
            free.push(buf);
        }
    }
}

/// A segment staged in private anonymous memory; synced ranges are written to the file.
#[derive(Debug)]
struct StagedSegment {
    /// `Some` until dropped (then it goes back to `pool`).
    buf: Option<MmapRaw>,
    file: File,
    pool: Arc<StagingPool>,
}

impl StagedSegment {
    fn buf(&self) -> &MmapRaw {
        // Invariant: `buf` is `Some` for the whole life of the segment (taken only in drop).
        self.buf.as_ref().expect("staging buffer present until drop")
    }
}

impl Drop for StagedSegment {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.give_back(buf);
        }
    }
}

// SAFETY: `buf` is an anonymous mapping of a fixed length, present until drop (taken only
// there): `as_ptr()` is its first byte and `len()` its length for the segment's life.
#[allow(unsafe_code)]
unsafe impl SegmentMap for StagedSegment {
    fn len(&self) -> usize {
        self.buf().len()
    }

    fn as_ptr(&self) -> *mut u8 {
        self.buf().as_mut_ptr()
    }

    fn write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        let end = offset.checked_add(len).filter(|&e| e <= self.buf().len()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "write range beyond the segment")
        })?;
        let mut at = offset;
        while at < end {
            let file_offset = libc::off_t::try_from(at)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            // SAFETY: `at..end` lies inside the staging buffer (checked above), which stays
            // mapped while `self` lives; pwrite only reads those bytes. The caller's contract
            // (`SegmentMap::write_range` and `sync_range`) is that they were written before this call (a
            // happens-before edge through the flusher's job queue) and are not being written
            // now, so the kernel's copy does not race a write. The descriptor is owned by
            // `self.file`.
            #[allow(unsafe_code)]
            let n = unsafe {
                libc::pwrite(
                    self.file.as_raw_fd(),
                    self.buf().as_ptr().add(at).cast::<libc::c_void>(),
                    end - at,
                    file_offset,
                )
            };
            match n {
                n if n > 0 => at += n.unsigned_abs(),
                0 => return Err(io::Error::new(io::ErrorKind::WriteZero, "pwrite wrote nothing")),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.write_range(offset, len)?;
        self.file.sync_data()
    }

    fn writes_through(&self) -> bool {
        false
    }

    fn prefault(&self) {
        // Zero pages populated ahead of the writer, as for mapped segments.
        #[cfg(target_os = "linux")]
        let _ = self.buf().advise(memmap2::Advice::PopulateWrite);
    }
}

#[derive(Debug)]
struct FileLock {
    _file: File,
}

impl DirLock for FileLock {}

/// A reader's "lock" on a directory that cannot be written: nothing to exclude.
#[derive(Debug)]
struct NoLock;

impl DirLock for NoLock {}

/// True for errors that mean "this directory cannot be written here" (a read-only mount,
/// no permission).
fn unwritable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EROFS | libc::EACCES | libc::EPERM))
}

fn fallocate(file: &File, size: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by `file`,
    // which outlives the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes written per call when preallocating by writing zeros.
const ZERO_CHUNK: usize = 1 << 20;

/// Set once a segment was preallocated by writing zeros (the notice is printed once).
static ZERO_FILL_NOTICE: std::sync::Once = std::sync::Once::new();

/// Allocates `size` bytes of `file` (named `path` in messages): `fallocate`, or, where the
/// file system does not support it (FUSE and others: `EOPNOTSUPP`), by writing zeros over the
/// whole file and syncing them, saying so once per process on stderr.
///
/// Never a sparse file (`set_len`): the blocks must exist before the segment is mapped or
/// written, so that a full disk is an error here (`ENOSPC`) and never a `SIGBUS` on a write
/// through the mapping, or a failed sync of an acknowledged group, later.
///
/// Returns true when it wrote zeros.
fn preallocate(file: &File, path: &Path, size: u64) -> io::Result<bool> {
    preallocate_with(file, path, size, fallocate)
}

/// [`preallocate`] with the `fallocate` call given (a seam for tests of the fallback).
fn preallocate_with(
    file: &File,
    path: &Path,
    size: u64,
    fallocate: impl FnOnce(&File, u64) -> io::Result<()>,
) -> io::Result<bool> {
    match fallocate(file, size) {
        Err(e) if fallocate_unsupported(&e) => {
            write_zeros(file, size)?;
            ZERO_FILL_NOTICE.call_once(|| {
                eprintln!(
                    "rewardpool: fallocate is not supported for {}: {e}; segments are \
                     preallocated by writing zeros instead (slower to create)",
                    path.display()
                );
            });
            Ok(true)
        }
        other => other.map(|()| false),
    }
}

/// True for the errors that mean "this file system (or kernel) has no fallocate".
fn fallocate_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS))
}

/// Writes zeros over `0..size` of `file` in large chunks and syncs them: every block is
/// allocated (and on disk) when this returns.
///
/// Each chunk is written back before the next one is written (`sync_file_range`), so at most
/// one chunk is in flight: the preparer fills the next segment while the flusher syncs the
/// current one, and a single writeback of 64 MiB at the end held the flusher's syncs for
/// 15–40 ms (measured: fdatasync max per bench run).
fn write_zeros(file: &File, size: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0_u8; ZERO_CHUNK];
    let mut at = 0_u64;
    while at < size {
        let n = usize::try_from(size - at).map_or(ZERO_CHUNK, |left| left.min(ZERO_CHUNK));
        file.write_all_at(&zeros[..n], at)?;
        // Best effort (pacing only; the sync below reports any write error): start the
        // chunk's writeback and wait for it.
        if let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(at), libc::off64_t::try_from(n)) {
            // SAFETY: sync_file_range only reads its integer arguments; `file` owns the
            // descriptor.
            #[allow(unsafe_code)]
            let _ = unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    offset,
                    len,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )
            };
        }
        at += n as u64;
    }
    file.sync_data()
}

impl Storage for OsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<AlignedVec<16>> {
        let mut file = File::open(self.path(name))?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = AlignedVec::<16>::with_capacity(len);
        buf.resize(len, 0);
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn read_prefix(&self, name: &str, len_max: usize) -> io::Result<(AlignedVec<16>, u64)> {
        let mut file = File::open(self.path(name))?;
        let file_len = file.metadata()?.len();
        let len = usize::try_from(file_len).unwrap_or(usize::MAX).min(len_max);
        let mut buf = AlignedVec::<16>::with_capacity(len);
        buf.resize(len, 0);
        file.read_exact(&mut buf)?;
        Ok((buf, file_len))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = File::open(self.path(name))?;
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_synced(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(self.path(name))?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn create_segment(&self, name: &str, size: u64) -> io::Result<Arc<dyn SegmentMap>> {
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(self.path(name))?;
        let zeroed = match preallocate(&file, &self.path(name), size) {
            Ok(zeroed) => zeroed,
            Err(e) => {
                let _ = fs::remove_file(self.path(name));
                return Err(e);
            }
        };
        if self.writes == SegmentWrites::Staged && !zeroed {
            // Sync durability: every group ends in an fdatasync. On fallocated (unwritten)
            // blocks each of those also converts the extent it wrote to "written": a kernel
            // worker hop and an extra metadata write per sync. Written zeros make every later
            // fdatasync a plain data write + flush (the reason PostgreSQL zero-fills its WAL
            // files); measured in perf/results/2026-11-30-slow-sync. It costs 50–150 ms per
            // 64 MiB segment here: the preparer thread creates the next segments off the hot
            // path; only the first one of a process is created at startup.
            if let Err(e) = write_zeros(&file, size) {
                let _ = fs::remove_file(self.path(name));
                return Err(e);
            }
        }
        if self.writes == SegmentWrites::Staged {
            let len = usize::try_from(size)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;

            let buf = self.staging.take(len)?;
            return Ok(Arc::new(StagedSegment {
                buf: Some(buf),
                file,
                pool: Arc::clone(&self.staging),
            }));
        }
        let map = MmapRaw::map_raw(&file)?;
        Ok(Arc::new(MappedSegment { map, _file: file }))
    }

    fn open_segment(&self, name: &str) -> io::Result<Arc<dyn SegmentMap>> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(name))?;
        let map = MmapRaw::map_raw(&file)?;
        Ok(Arc::new(MappedSegment { map, _file: file }))
    }

    fn resume_segment(&self, name: &str) -> io::Result<Arc<dyn SegmentMap>> {
        if self.writes != SegmentWrites::Staged {
            return self.open_segment(name);
        }
        let file = OpenOptions::new().read(true).write(true).open(self.path(name))?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        // The buffer's bytes below the resume point are stale or zero, never the file's: the
        // journal writes back only ranges at or after it, and the header it rewrites.
        let buf = self.staging.take(len)?;
        Ok(Arc::new(StagedSegment { buf: Some(buf), file, pool: Arc::clone(&self.staging) }))
    }

    /// Writers open (or create) `lock` read-write and take `LOCK_EX`. Readers take
    /// `LOCK_SH` on `lock` opened read-only when it exists (flock needs no write access,
    /// so a backup on a read-only mount can be inspected); when it does not exist they
    /// create it, except where the directory cannot be written (EROFS, EACCES, EPERM):
    /// there no writer can run either, so the reader proceeds without a lock and creates
    /// nothing.
    fn lock(&self, exclusive: bool) -> io::Result<Box<dyn DirLock>> {
        let path = self.path(crate::layout::LOCK_FILE);
        let create =
            || OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
        let file = if exclusive {
            create()?
        } else {
            match OpenOptions::new().read(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => match create() {
                    Ok(file) => file,
                    Err(e) if unwritable(&e) => return Ok(Box::new(NoLock)),
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        };
        let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
        // SAFETY: flock only reads its integer arguments; `file` owns the descriptor.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(FileLock { _file: file }))
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_bytes(storage: &OsStorage, name: &str) -> Vec<u8> {
        storage.read(name).unwrap().to_vec()
    }

    fn write(map: &dyn SegmentMap, offset: usize, bytes: &[u8]) {
        crate::wal::segment::write_at(map, offset, bytes);
    }

    #[test]
    fn staged_segment_reaches_the_file_only_through_sync_range() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            OsStorage::new(dir.path()).unwrap().with_segment_writes(SegmentWrites::Staged);
        let map = storage.create_segment("seg", 64 << 10).unwrap();
        assert_eq!(map.len(), 64 << 10);
        write(&*map, 0, b"header");
        write(&*map, 5000, b"frames");
        // Not synced yet: the file is still the zero-filled, full-size allocation.
        let bytes = file_bytes(&storage, "seg");
        assert_eq!(bytes.len(), 64 << 10);
        assert!(bytes.iter().all(|&b| b == 0));
        // Only the synced range lands.
        map.sync_range(5000, 6).unwrap();
        let bytes = file_bytes(&storage, "seg");
        assert_eq!(&bytes[5000..5006], b"frames");
        assert!(bytes[..5000].iter().all(|&b| b == 0));
        map.sync_range(0, 6).unwrap();
        assert_eq!(&file_bytes(&storage, "seg")[..6], b"header");
        // write_range puts a range in the file (the page cache) without a sync; only that range.
        write(&*map, 9000, b"more");
        write(&*map, 9100, b"later");
        map.write_range(9000, 4).unwrap();
        let bytes = file_bytes(&storage, "seg");
        assert_eq!(&bytes[9000..9004], b"more");
        assert!(bytes[9004..].iter().all(|&b| b == 0));
        // A range past the end is an error, not a read beyond the buffer.
        assert!(map.sync_range((64 << 10) - 2, 4).is_err());
        assert!(map.sync_range(usize::MAX, 2).is_err());
        assert!(map.write_range((64 << 10) - 2, 4).is_err());
    }

    #[test]
    fn a_reused_staging_buffer_leaks_no_stale_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            OsStorage::new(dir.path()).unwrap().with_segment_writes(SegmentWrites::Staged);
        let first = storage.create_segment("one", 64 << 10).unwrap();
        let first_ptr = first.as_ptr();
        write(&*first, 0, &[0xAA; 64 << 10]);
        first.sync_range(0, 64 << 10).unwrap();
        drop(first);
        // The next segment of that size gets the same (resident, dirty) buffer...
        let second = storage.create_segment("two", 64 << 10).unwrap();
        assert_eq!(second.as_ptr(), first_ptr, "the retired buffer is reused");
        write(&*second, 4096, b"fresh");
        second.sync_range(4096, 5).unwrap();
        // ...but only what the writer wrote and synced reaches its file.
        let bytes = file_bytes(&storage, "two");
        assert_eq!(&bytes[4096..4101], b"fresh");
        assert_eq!(bytes.iter().filter(|&&b| b != 0).count(), 5);
        // A different size is a new buffer.
        let other = storage.create_segment("three", 128 << 10).unwrap();
        assert_ne!(other.as_ptr(), first_ptr);
    }

    /// Blocks allocated to `path` and its length (st_blocks counts 512-byte units).
    fn allocated(path: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).unwrap();
        (meta.blocks() * 512, meta.len())
    }

    #[test]
    fn without_fallocate_a_segment_is_preallocated_by_writing_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        // Not a multiple of the chunk: the last write is a short one.
        let size = 2 * ZERO_CHUNK as u64 + 12_288;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
        let mut called = false;
        let zeroed = preallocate_with(&file, &path, size, |_, _| {
            called = true;
            Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
        })
        .unwrap();
        assert!(zeroed);
        assert!(called);
        let (bytes_allocated, len) = allocated(&path);
        assert_eq!(len, size, "full size");
        assert!(bytes_allocated >= size, "not sparse: {bytes_allocated} bytes allocated of {size}");
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.iter().all(|&b| b == 0), "all zeros");
    }

    #[test]
    fn other_fallocate_errors_stay_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
        let e = preallocate_with(&file, &path, 1 << 20, |_, _| {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        // Nothing was written in its place.
        assert_eq!(allocated(&path), (0, 0));
    }

    /// The extents of `path` as (length, unwritten) from the FIEMAP ioctl; `None` where the
    /// file system does not support it (tmpfs).
    fn fiemap(path: &Path) -> Option<Vec<(u64, bool)>> {
        /// `struct fiemap` with room for 64 `struct fiemap_extent`s (linux/fiemap.h).
        #[repr(C)]
        struct Fiemap {
            start: u64,
            length: u64,
            flags: u32,
            mapped_extents: u32,
            extent_count: u32,
            reserved: u32,
            extents: [[u64; 7]; 64],
        }
        const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
        const FIEMAP_FLAG_SYNC: u32 = 1;
        const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
        let file = File::open(path).unwrap();
        let mut map = Fiemap {
            start: 0,
            length: u64::MAX,
            flags: FIEMAP_FLAG_SYNC,
            mapped_extents: 0,
            extent_count: 64,
            reserved: 0,
            extents: [[0; 7]; 64],
        };
        // SAFETY: FS_IOC_FIEMAP reads and writes a `struct fiemap` followed by
        // `extent_count` extents of 56 bytes each, which `map` holds; `file` owns the fd.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, &raw mut map) };
        if rc != 0 {
            return None;
        }
        let n = (map.mapped_extents as usize).min(64);
        // fe_length is the third u64; fe_flags the low half of the sixth.
        Some(
            map.extents[..n]
                .iter()
                .map(|e| (e[2], (e[5] as u32) & FIEMAP_EXTENT_UNWRITTEN != 0))
                .collect(),
        )
    }

    #[test]
    fn staged_segments_are_written_zeros_not_unwritten_extents() {
        let dir = tempfile::tempdir().unwrap();
        let staged = OsStorage::new(dir.path()).unwrap().with_segment_writes(SegmentWrites::Staged);
        let _map = staged.create_segment("staged", 4 << 20).unwrap();
        let path = dir.path().join("staged");
        let (bytes_allocated, len) = allocated(&path);
        assert_eq!(len, 4 << 20);
        assert!(bytes_allocated >= 4 << 20);
        assert!(fs::read(&path).unwrap().iter().all(|&b| b == 0));
        let Some(extents) = fiemap(&path) else {
            eprintln!("skipped the extent check: no FIEMAP on this file system");
            return;
        };
        assert_eq!(extents.iter().map(|e| e.0).sum::<u64>(), 4 << 20, "{extents:?}");
        assert!(extents.iter().all(|e| !e.1), "unwritten extents left: {extents:?}");
        // The check itself: a fallocated (mapped) segment on the same file system has
        // unwritten extents (ext4, xfs and btrfs report them through FIEMAP).
        let mapped = OsStorage::new(dir.path()).unwrap();
        let _map = mapped.create_segment("mapped", 4 << 20).unwrap();
        let fallocated = fiemap(&dir.path().join("mapped")).unwrap();
        assert!(
            fallocated.iter().any(|e| e.1),
            "FIEMAP shows no unwritten extents: {fallocated:?}"
        );
    }

    #[test]
    fn fallocate_allocates_the_whole_segment() {
        let dir = tempfile::tempdir().unwrap();
        let storage = OsStorage::new(dir.path()).unwrap();
        let _map = storage.create_segment("seg", 1 << 20).unwrap();
        let (bytes_allocated, len) = allocated(&dir.path().join("seg"));
        assert_eq!(len, 1 << 20);
        assert!(bytes_allocated >= 1 << 20);
    }

    #[test]
    fn mapped_segment_writes_reach_the_page_cache_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = OsStorage::new(dir.path()).unwrap();
        let map = storage.create_segment("seg", 64 << 10).unwrap();
        write(&*map, 100, b"frames");
        // Visible to a reader (and to recovery after a process kill) before any sync.
        assert_eq!(&file_bytes(&storage, "seg")[100..106], b"frames");
        map.sync_range(0, 4096).unwrap();
    }
}
