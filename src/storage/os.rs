//! [`Storage`] on the real file system: fallocate'd, mmap'd segments; pread-style reads.

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
}

impl OsStorage {
    /// Storage in `dir`, creating the directory if needed.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(dir: &Path) -> io::Result<OsStorage> {
        fs::create_dir_all(dir)?;
        Ok(OsStorage { dir: dir.to_path_buf() })
    }

    /// Storage in an existing `dir` (read-only commands do not create directories).
    ///
    /// # Errors
    /// `dir` is not a directory.
    pub fn existing(dir: &Path) -> io::Result<OsStorage> {
        if !dir.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(OsStorage { dir: dir.to_path_buf() })
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

impl SegmentMap for MappedSegment {
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
}

#[derive(Debug)]
struct FileLock {
    _file: File,
}

impl DirLock for FileLock {}

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
        if let Err(e) = fallocate(&file, size) {
            let _ = fs::remove_file(self.path(name));
            return Err(e);
        }
        let map = MmapRaw::map_raw(&file)?;
        Ok(Arc::new(MappedSegment { map, _file: file }))
    }

    fn open_segment(&self, name: &str) -> io::Result<Arc<dyn SegmentMap>> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(name))?;
        let map = MmapRaw::map_raw(&file)?;
        Ok(Arc::new(MappedSegment { map, _file: file }))
    }

    fn lock(&self, exclusive: bool) -> io::Result<Box<dyn DirLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path("lock"))?;
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
