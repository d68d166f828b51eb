//! Standard streams of the program. stdin reads end-of-file; stdout and stderr go to the
//! console sink in debug mode and are discarded (but reported as written) in production mode,
//! so a production enclave has no output channel besides vsock.

use std::sync::Arc;

use super::errno::{Errno, SysResult};
use super::file::{Descriptor, FdTable, FileOps, Stat};
use crate::memory::UserMemory;

/// Which standard stream a console write came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

/// Receives the program's console output (debug mode).
pub trait ConsoleSink: Send + Sync {
    /// Called with each write the program makes to stdout or stderr.
    fn write(&self, stream: Stream, data: &[u8]);
}

/// A standard stream.
pub struct StdStream {
    stream: Option<Stream>,
    sink: Option<Arc<dyn ConsoleSink>>,
}

impl FileOps for StdStream {
    fn read(&self, _buf: &mut [u8]) -> SysResult {
        match self.stream {
            None => Ok(0),
            Some(_) => Err(Errno::EBADF),
        }
    }

    fn write(&self, data: &[u8]) -> SysResult {
        let Some(stream) = self.stream else {
            return Err(Errno::EBADF);
        };
        if let Some(sink) = &self.sink {
            sink.write(stream, data);
        }
        Ok(data.len() as u64)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            mode: libc::S_IFCHR | 0o620,
            rdev: 0x0501,
            blksize: 1024,
            ..Stat::default()
        })
    }

    fn ioctl(&self, _cmd: u64, _arg: u64, _mem: &UserMemory<'_>) -> SysResult {
        // Not a terminal: programs then buffer stdout fully, as with a pipe.
        Err(Errno::ENOTTY)
    }

    fn poll_ready(&self) -> i16 {
        match self.stream {
            None => libc::POLLIN,
            Some(_) => libc::POLLOUT,
        }
    }
}

/// Installs fds 0, 1, 2.
pub fn install_std_streams(fds: &mut FdTable, sink: Option<Arc<dyn ConsoleSink>>) {
    for stream in [None, Some(Stream::Stdout), Some(Stream::Stderr)] {
        let file = Arc::new(StdStream {
            stream,
            sink: sink.clone(),
        });
        // The table is empty, so 0, 1, 2 are free: an error here cannot happen.
        let _ = fds.insert(Descriptor {
            file,
            cloexec: false,
        });
    }
}
