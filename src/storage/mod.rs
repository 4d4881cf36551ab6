//! The storage seam: every byte the log and snapshots put on disk goes through [`Storage`],
//! so tests can swap the operating system for `FaultyStorage` (feature `testing`) and inject
//! crashes, lost writes, failed syncs and a full disk.
//!
//! Segments are written through a [`SegmentMap`]: a fixed-size region the core thread writes
//! frames into (an mmap for [`OsStorage`]) and the flusher makes durable range by range.
//! Everything else (snapshots, headers read back at recovery) is whole-file reads and
//! synced whole-file writes.

#[cfg(any(test, feature = "testing"))]
mod faulty;
mod os;

use std::fmt;
use std::io;
use std::sync::Arc;

use rkyv::util::AlignedVec;

#[cfg(any(test, feature = "testing"))]
pub use faulty::{CrashMode, FaultyStorage};
pub use os::{OsStorage, SegmentWrites};

/// A segment file mapped for writing.
///
/// # Safety
/// Implementors promise that `as_ptr()` is valid for reads and writes of `len()` bytes, and
/// that both stay the same, for as long as the map lives (the log writes frames through
/// the pointer without any further check). Users must keep to the log's discipline: one
/// writer per byte range at a time, and a range is synced only after its writer finished
/// writing it (the core publishes the commit offset with Release before the flusher syncs
/// up to it).
#[allow(unsafe_code)]
pub unsafe trait SegmentMap: Send + Sync + fmt::Debug {
    /// Size in bytes.
    fn len(&self) -> usize;
    /// True for a zero-length map.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first byte.
    fn as_ptr(&self) -> *mut u8;
    /// Makes `offset..offset + len` durable (msync MS_SYNC for a mapped segment; pwrite
    /// then fdatasync for a staged one, see [`SegmentWrites`]). Those bytes must have been
    /// written before the call (happens-before) and must not be written during it.
    ///
    /// # Errors
    /// The device reported an error: the log must stop (SPEC §2.9), never retry.
    fn sync_range(&self, offset: usize, len: usize) -> io::Result<()>;
    /// Puts `offset..offset + len` into the file (the page cache) without syncing it: a
    /// `pwrite` for a staged segment; nothing to do for a map that writes through (the
    /// default). The same happens-before contract as [`SegmentMap::sync_range`]. A later
    /// `sync_range` of any range makes these bytes durable too (fdatasync covers the whole
    /// file), which is what closing a staged segment relies on.
    ///
    /// # Errors
    /// The write failed: the log must stop (SPEC §2.9).
    fn write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Faults the pages in ahead of the writer, off the hot path (best effort).
    fn prefault(&self) {}
    /// The writer is done with this map (a retired segment, before its closing syncs): drop
    /// its page-table entries so writing the data back write-protects no mapped page (one
    /// TLB shoot-down per page otherwise). The bytes stay readable and writable; the next
    /// access faults the page back in from the page cache. Default: nothing to do.
    fn retire(&self) {}
    /// True when bytes written through [`SegmentMap::as_ptr`] are in the file (the page
    /// cache) at once, so they survive a process kill without `sync_range`; false for a
    /// staged segment, whose bytes reach the file only through `sync_range`.
    fn writes_through(&self) -> bool {
        true
    }
}

/// A lock on a data directory, held as long as this value lives.
pub trait DirLock: Send + fmt::Debug {}

/// Files in one directory.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Names of the files in the directory.
    ///
    /// # Errors
    /// The directory cannot be read.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole file, in a 16-byte aligned buffer (frames are decoded in place).
    ///
    /// # Errors
    /// Missing file or a read error (a bad sector is an error, not a signal).
    fn read(&self, name: &str) -> io::Result<AlignedVec<16>>;
    /// The first `len_max` bytes of the file (fewer if it is shorter), and the file's
    /// length: recovery reads a closed segment only up to its last commit.
    ///
    /// # Errors
    /// Missing file or a read error.
    fn read_prefix(&self, name: &str, len_max: usize) -> io::Result<(AlignedVec<16>, u64)>;
    /// Reads into `buf` from `offset` (pread) until `buf` is full or the file ends; returns
    /// the bytes read. Recovery walks segments in chunks through a reused buffer.
    ///
    /// # Errors
    /// Missing file or a read error.
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Creates or replaces `name` with `bytes` and syncs its data (not the directory).
    ///
    /// # Errors
    /// Any write or sync error.
    fn write_synced(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Renames within the directory (durable after `sync_dir`).
    ///
    /// # Errors
    /// Any rename error.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file (durable after `sync_dir`).
    ///
    /// # Errors
    /// Any removal error.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes renames, creations and removals durable (fsync of the directory).
    ///
    /// # Errors
    /// Any sync error.
    fn sync_dir(&self) -> io::Result<()>;
    /// Creates `name` (it must not exist) at `size` bytes, all allocated (fallocate: a full
    /// disk is an error here, never SIGBUS later), zero-filled, and maps it for writing.
    ///
    /// # Errors
    /// ENOSPC, an existing file, or any other I/O error.
    fn create_segment(&self, name: &str, size: u64) -> io::Result<Arc<dyn SegmentMap>>;
    /// Maps an existing segment for writing (recovery closes a segment through this).
    ///
    /// # Errors
    /// Missing file or a mapping error.
    fn open_segment(&self, name: &str) -> io::Result<Arc<dyn SegmentMap>>;
    /// Opens an existing segment to append to it again, written the way new segments are
    /// (a staged segment writes only the ranges synced or written after this call: bytes
    /// already in the file are never written back). Default: [`Storage::open_segment`].
    ///
    /// # Errors
    /// Missing file or a mapping error.
    fn resume_segment(&self, name: &str) -> io::Result<Arc<dyn SegmentMap>> {
        self.open_segment(name)
    }
    /// Takes the directory's lock file; `exclusive` for writers. A shared lock creates no
    /// file where the directory cannot be written (a read-only mount: no writer can run
    /// there either); see [`OsStorage`].
    ///
    /// # Errors
    /// Another process holds it (`WouldBlock`), or an I/O error.
    fn lock(&self, exclusive: bool) -> io::Result<Box<dyn DirLock>>;
    /// Where the files are, for messages.
    fn describe(&self, name: &str) -> String;
}
