//! Reading a live log's committed groups from its files, for a log shipper.
//!
//! [`LogTail`] follows the segments of a data directory (`wal.NNNNNN`) from a position, and
//! hands out each committed group as a [`Group`]: its frames byte for byte (each with its
//! own CRC-32C, the commit frame last), its first and last request ids, its draws. It reads
//! the files with `pread` (never the engine's mapping) and stops at the durable watermark
//! it is given ([`crate::Metrics::durable_request_id`]), so the core thread never waits for
//! it and it never hands out a group that was not acknowledged.
//!
//! Reading a file that another thread is writing is safe here because nothing is trusted
//! before its CRC: a frame still being written fails its check (or reads as zeros) and the
//! tail waits for the next call. A segment ends where its closed header's `end_offset`
//! says; the tail then goes on in the next segment, past its snapshot marker (whose last
//! request id must continue the previous segment's).
//!
//! What a group is: the frames after one commit up to and including the next commit — a
//! group of draws (batch frames, or draw frames in a segment of format 1 or 2) or an
//! update (one update frame), as the core thread commits them.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used))]

use std::fmt;
use std::io;
use std::sync::Arc;

use rkyv::util::AlignedVec;

use crate::layout::{parse_segment_name, segment_name};
use crate::storage::Storage;
use crate::wal::frame::{self, FrameError, Record};
use crate::wal::header::{SegmentHeader, SegmentStatus, SEGMENT_HEADER_SIZE};

/// Bytes read from a segment per `pread`, at most: many groups per read under load. An idle
/// log costs one such read per call: a shipper calls [`LogTail::next_group`] often only
/// while the watermark is ahead of it.
const READ_LEN: usize = 256 << 10;

/// One committed group, as it is in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Where it is: the segment's sequence number.
    pub segment: u64,
    /// Where it is: the offset of its first frame in the segment.
    pub offset: u64,
    /// Just past its commit frame.
    pub end: u64,
    /// The last request id before it (the previous group's).
    pub prev_request_id: u64,
    /// Its first draw's request id; `prev_request_id + 1` when it holds no draw.
    pub first_request_id: u64,
    /// Its commit frame's last request id.
    pub last_request_id: u64,
    /// Draws in it.
    pub draws: u64,
    /// The group number in its commit frame (counted from 1 in each run of the engine:
    /// what the replication gate releases, `JournalStats::released_group`).
    pub group: u64,
    /// Its frames, byte for byte: each 16-byte aligned frame with its CRC, the commit last.
    pub frames: Vec<u8>,
}

/// Where a [`LogTail`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailStart {
    /// At the log's first group: segment 0, which must still be there.
    Beginning,
    /// At the first group of segment `segment` (right after its snapshot marker), which
    /// must still be there: where a promoted standby's log continues when none of the
    /// groups before it are left in its files.
    Segment {
        /// The segment.
        segment: u64,
    },
    /// Right after a group handed out before: its segment, its `end`, and its last request
    /// id (checked against the commit frame that ends there).
    After {
        /// The group's segment.
        segment: u64,
        /// The group's `end`.
        end: u64,
        /// The group's last request id.
        last_request_id: u64,
    },
}

/// Why the tail cannot go on.
#[derive(Debug)]
#[non_exhaustive]
pub enum TailError {
    /// Reading a file failed.
    Io {
        /// The file.
        file: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The segment the tail needs is not in the directory (retention deleted it before it
    /// was read, or the log starts later).
    Missing {
        /// The segment's file name.
        file: String,
    },
    /// The log is damaged where the tail reads: a bad header, a bad frame before a
    /// segment's end, request ids that do not continue.
    Damaged {
        /// The file.
        file: String,
        /// The offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The start position does not end a group of this log.
    BadStart {
        /// What was found there.
        reason: String,
    },
}

impl fmt::Display for TailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TailError::Io { file, source } => write!(f, "reading {file}: {source}"),
            TailError::Missing { file } => write!(
                f,
                "{file} is not in the data directory: the log was deleted before it was \
                 read (raise the retention, or rebuild the replica)"
            ),
            TailError::Damaged { file, offset, reason } => {
                write!(f, "{file} is damaged at offset {offset}: {reason}")
            }
            TailError::BadStart { reason } => {
                write!(f, "cannot continue the log where it was left: {reason}")
            }
        }
    }
}

impl std::error::Error for TailError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TailError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A reader of a live log's committed groups (module docs). Holds no lock and no file open
/// between calls; it owns a read buffer of up to 1 MiB.
pub struct LogTail {
    storage: Arc<dyn Storage>,
    /// The segment read now, and its header as last read.
    segment: u64,
    header: Option<SegmentHeader>,
    /// The offset of the next frame to read in `segment` (just past the last group handed
    /// out, or past the snapshot marker).
    offset: u64,
    /// The last request id handed out (or the start's).
    last_request_id: u64,
    /// The bytes of `segment` from `buf_at`, as last read.
    buf: AlignedVec<16>,
    buf_at: u64,
    /// Where a closed segment last showed no valid group before its end (see
    /// `segment_ended`).
    stuck: Option<(u64, u64)>,
}

impl fmt::Debug for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogTail")
            .field("segment", &self.segment)
            .field("offset", &self.offset)
            .field("last_request_id", &self.last_request_id)
            .finish_non_exhaustive()
    }
}

fn damaged(file: &str, offset: u64, reason: impl Into<String>) -> TailError {
    TailError::Damaged { file: file.to_owned(), offset, reason: reason.into() }
}

/// Whether a frame error may be a frame still being written (wait) rather than damage.
fn maybe_in_progress(e: &FrameError) -> bool {
    matches!(e, FrameError::Truncated { .. } | FrameError::ChecksumMismatch { .. })
}

impl LogTail {
    /// A tail over the log in `storage`, from `start`.
    ///
    /// # Errors
    /// A missing segment, an unreadable or damaged header, or (`TailStart::After`) a
    /// position where no commit frame with that request id ends.
    pub fn open(storage: Arc<dyn Storage>, start: TailStart) -> Result<LogTail, TailError> {
        let (segment, offset, last) = match start {
            TailStart::Beginning => (0, 0, 0),
            TailStart::Segment { segment } => (segment, 0, 0),
            TailStart::After { segment, end, last_request_id } => (segment, end, last_request_id),
        };
        let mut tail = LogTail {
            storage,
            segment,
            header: None,
            offset,
            last_request_id: last,
            buf: AlignedVec::new(),
            buf_at: 0,
            stuck: None,
        };
        let header = tail.read_header()?.ok_or_else(|| TailError::Missing {
            file: tail.storage.describe(&segment_name(segment)),
        })?;
        match start {
            TailStart::Beginning | TailStart::Segment { .. } => {
                tail.last_request_id = header.first_request_id.saturating_sub(1);
                tail.offset = tail.skip_marker(&header)?;
            }
            TailStart::After { .. } => tail.check_start()?,
        }
        Ok(tail)
    }

    /// The oldest segment in the directory, if any (where [`TailStart::Beginning`] would
    /// need segment 0).
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn oldest_segment(storage: &dyn Storage) -> io::Result<Option<u64>> {
        Ok(storage.list()?.iter().filter_map(|n| parse_segment_name(n)).min())
    }

    /// The segment being read (the oldest one this tail still needs: what a shipper holds
    /// from retention, `JournalStats::retain_from`).
    #[must_use]
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// The last request id handed out (or the start's).
    #[must_use]
    pub fn last_request_id(&self) -> u64 {
        self.last_request_id
    }

    /// The next committed group whose last request id is at most `durable`, or `None` when
    /// there is none yet (call again later).
    ///
    /// # Errors
    /// A missing segment, damage, an I/O failure. Once it failed, the tail stays where it
    /// was: the same call fails again.
    pub fn next_group(&mut self, durable: u64) -> Result<Option<Group>, TailError> {
        if durable < self.last_request_id {
            return Ok(None);
        }
        // At most one segment change per call plus the group itself.
        for _ in 0..2 {
            match self.read_group(durable)? {
                Step::Group(group) => return Ok(Some(group)),
                Step::Wait => return Ok(None),
                Step::NextSegment => self.advance()?,
            }
        }
        Ok(None)
    }

    fn file(&self) -> String {
        self.storage.describe(&segment_name(self.segment))
    }

    /// Reads and checks the current segment's header; `None` when the file is absent.
    fn read_header(&mut self) -> Result<Option<SegmentHeader>, TailError> {
        let name = segment_name(self.segment);
        let mut head = [0_u8; SEGMENT_HEADER_SIZE];
        match self.storage.read_at(&name, 0, &mut head) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(TailError::Io { file: self.file(), source }),
        }
        let header =
            SegmentHeader::decode(&head).map_err(|e| damaged(&self.file(), 0, e.to_string()))?;
        if header.sequence != self.segment {
            return Err(damaged(&self.file(), 16, "its header names another sequence number"));
        }
        self.header = Some(header);
        Ok(Some(header))
    }

    /// Reads `[from, from + READ_LEN)` of the current segment into the buffer.
    fn fill(&mut self, from: u64) -> Result<(), TailError> {
        let name = segment_name(self.segment);
        let size = self.header.map_or(0, |h| h.segment_size);
        let len = usize::try_from(size.saturating_sub(from)).unwrap_or(READ_LEN).min(READ_LEN);
        self.buf.clear();
        self.buf.resize(len, 0);
        let got = match self.storage.read_at(&name, from, &mut self.buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TailError::Missing { file: self.file() })
            }
            Err(source) => return Err(TailError::Io { file: self.file(), source }),
        };
        self.buf.resize(got, 0);
        self.buf_at = from;
        Ok(())
    }

    /// Checks that a commit frame with the start's request id ends at the start offset.
    fn check_start(&mut self) -> Result<(), TailError> {
        let commit = frame::COMMIT_FRAME_SIZE as u64;
        let Some(at) =
            self.offset.checked_sub(commit).filter(|&at| at >= SEGMENT_HEADER_SIZE as u64)
        else {
            return Err(TailError::BadStart {
                reason: format!("offset {} of {} holds no commit frame", self.offset, self.file()),
            });
        };
        self.fill(at)?;
        let found = match frame::decode(&self.buf) {
            Ok(Some((Record::Commit { last_request_id, .. }, _))) => Some(last_request_id),
            _ => None,
        };
        if found != Some(self.last_request_id) {
            return Err(TailError::BadStart {
                reason: format!(
                    "{} at offset {at} holds {}, not the commit of request id {}",
                    self.file(),
                    found.map_or("no commit frame".to_owned(), |id| format!(
                        "the commit of request id {id}"
                    )),
                    self.last_request_id
                ),
            });
        }
        self.buf.clear();
        Ok(())
    }

    /// Checks the snapshot marker that opens a segment; returns the offset past it.
    fn skip_marker(&mut self, header: &SegmentHeader) -> Result<u64, TailError> {
        let at = SEGMENT_HEADER_SIZE as u64;
        self.fill(at)?;
        match frame::decode(&self.buf) {
            Ok(Some((Record::Snapshot { last_request_id, .. }, len))) => {
                if last_request_id.saturating_add(1) != header.first_request_id {
                    return Err(damaged(
                        &self.file(),
                        at,
                        format!(
                            "its snapshot marker says request id {last_request_id}, its header \
                             starts at {}",
                            header.first_request_id
                        ),
                    ));
                }
                Ok(at + len as u64)
            }
            Ok(_) => Err(damaged(&self.file(), at, "the first frame is not a snapshot marker")),
            Err(e) => Err(damaged(&self.file(), at, e.to_string())),
        }
    }

    /// Moves to the next segment (the current one ended at `offset`).
    fn advance(&mut self) -> Result<(), TailError> {
        let previous = self.segment;
        self.segment += 1;
        self.buf.clear();
        let Some(header) = self.read_header()? else {
            self.segment = previous;
            let _ = self.read_header()?;
            return Err(TailError::Missing {
                file: self.storage.describe(&segment_name(previous + 1)),
            });
        };
        if header.first_request_id <= self.last_request_id {
            let file = self.file();
            self.segment = previous;
            return Err(damaged(
                &file,
                24,
                format!(
                    "it starts at request id {}, not after {}",
                    header.first_request_id, self.last_request_id
                ),
            ));
        }
        match self.skip_marker(&header) {
            Ok(offset) => {
                self.offset = offset;
                Ok(())
            }
            Err(e) => {
                self.segment = previous;
                Err(e)
            }
        }
    }

    /// Whether the current segment ended exactly where the tail is (then the next one
    /// holds what follows), re-reading its header.
    fn segment_ended(&mut self) -> Result<bool, TailError> {
        let header = self.read_header()?.ok_or_else(|| TailError::Missing { file: self.file() })?;
        if header.status != SegmentStatus::Closed {
            return Ok(false);
        }
        if header.end_offset > self.offset {
            // Closed after the bytes were read (wait for the next read), or damaged: a closed
            // segment never changes, so a second look at the same place decides.
            if self.stuck == Some((self.segment, self.offset)) {
                return Err(damaged(
                    &self.file(),
                    self.offset,
                    format!(
                        "no valid group here, and the segment is closed at offset {}",
                        header.end_offset
                    ),
                ));
            }
            self.stuck = Some((self.segment, self.offset));
            return Ok(false);
        }
        if header.end_offset < self.offset {
            return Err(damaged(
                &self.file(),
                self.offset,
                format!("the segment is closed at offset {}, before the tail", header.end_offset),
            ));
        }
        // Closed by a shutdown or a recovery: the next segment may not exist yet (the next
        // start installs it); the caller waits for it.
        let next = segment_name(self.segment + 1);
        Ok(self.storage.read_at(&next, 0, &mut [0_u8; 1]).is_ok())
    }

    /// Reads the group at `offset`.
    fn read_group(&mut self, durable: u64) -> Result<Step, TailError> {
        let start = self.offset;
        let in_buffer =
            |tail: &LogTail| start >= tail.buf_at && start < tail.buf_at + tail.buf.len() as u64;
        if !in_buffer(self) {
            self.fill(start)?;
        }
        for pass in 0..2 {
            match self.scan_group(start, durable)? {
                Scan::Group(group) => {
                    self.offset = group.end;
                    self.last_request_id = group.last_request_id;
                    return Ok(Step::Group(group));
                }
                Scan::NotDurable => return Ok(Step::Wait),
                Scan::End if pass == 0 => self.fill(start)?,
                Scan::End => break,
            }
        }
        if self.offset == start && self.segment_ended()? {
            return Ok(Step::NextSegment);
        }
        Ok(Step::Wait)
    }

    /// Walks the buffer from `start` to the next commit frame.
    fn scan_group(&self, start: u64, durable: u64) -> Result<Scan, TailError> {
        let base = usize::try_from(start - self.buf_at).unwrap_or(usize::MAX);
        let mut at = base;
        let mut draws = 0_u64;
        let mut first = None;
        let mut last_draw = self.last_request_id;
        loop {
            let Some(bytes) = self.buf.get(at..) else { return Ok(Scan::End) };
            let offset = self.buf_at + at as u64;
            let (record, len) = match frame::decode(bytes) {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(Scan::End),
                Err(e) if maybe_in_progress(&e) => return Ok(Scan::End),
                Err(e) => return Err(damaged(&self.file(), offset, e.to_string())),
            };
            match record {
                Record::Draw { request_id, .. } => {
                    first.get_or_insert(request_id);
                    last_draw = request_id;
                    draws += 1;
                }
                Record::Batch(batch) => {
                    first.get_or_insert(batch.first_request_id);
                    let count = batch.items.len() as u64;
                    last_draw = batch.first_request_id.saturating_add(count.saturating_sub(1));
                    draws += count;
                }
                Record::Update { .. } | Record::Key { .. } | Record::Seed { .. } => {}
                Record::Snapshot { .. } => {
                    return Err(damaged(
                        &self.file(),
                        offset,
                        "a snapshot marker inside the segment",
                    ))
                }
                Record::Commit { last_request_id, group } => {
                    if last_request_id > durable {
                        return Ok(Scan::NotDurable);
                    }
                    if last_request_id < last_draw || last_request_id < self.last_request_id {
                        return Err(damaged(
                            &self.file(),
                            offset,
                            format!(
                                "a commit of request id {last_request_id} after id {last_draw}"
                            ),
                        ));
                    }
                    let end = at + len;
                    let frames = self.buf.get(base..end).unwrap_or_default().to_vec();
                    return Ok(Scan::Group(Group {
                        segment: self.segment,
                        offset: start,
                        end: self.buf_at + end as u64,
                        prev_request_id: self.last_request_id,
                        first_request_id: first.unwrap_or(self.last_request_id + 1),
                        last_request_id,
                        draws,
                        group,
                        frames,
                    }));
                }
            }
            at += len;
        }
    }
}

/// What reading at the tail's position found.
enum Step {
    Group(Group),
    Wait,
    NextSegment,
}

/// What walking the buffer found.
enum Scan {
    Group(Group),
    /// A whole group whose commit is past the watermark.
    NotDurable,
    /// The buffer ends (or the written data ends) before a commit.
    End,
}
