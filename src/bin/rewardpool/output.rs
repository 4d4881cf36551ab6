//! Writing to stdout: buffered, flushed by the caller at its own pace, and a closed pipe is a
//! quiet success (`rewardpool draw --count 1000000 | head` must not print an error).

use std::io::{self, BufWriter, StdoutLock, Write};

use super::Failure;

/// Buffered stdout whose errors map to [`Failure`].
pub(crate) struct Out {
    inner: BufWriter<StdoutLock<'static>>,
}

impl Out {
    pub(crate) fn new() -> Out {
        Out { inner: BufWriter::with_capacity(64 * 1024, io::stdout().lock()) }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.inner.write_all(bytes).map_err(map_io)
    }

    pub(crate) fn line(&mut self, text: &str) -> Result<(), Failure> {
        self.write(text.as_bytes())?;
        self.write(b"\n")
    }

    pub(crate) fn flush(&mut self) -> Result<(), Failure> {
        self.inner.flush().map_err(map_io)
    }
}

pub(crate) fn map_io(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::StdoutClosed
    } else {
        Failure::failed(anyhow::Error::new(e).context("cannot write to standard output"))
    }
}
