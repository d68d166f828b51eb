//! Linux error numbers as returned to the program (`-errno` in RAX).

/// A Linux errno value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno(libc::$name);
            )*
        }
    };
}

errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    EBADF,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EEXIST,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EMFILE,
    ENOTTY,
    ESPIPE,
    EROFS,
    EPIPE,
    ERANGE,
    ENAMETOOLONG,
    ENOSYS,
    ELOOP,
    EOVERFLOW,
    EAFNOSUPPORT,
    ENOTSOCK,
    EOPNOTSUPP,
    ETIMEDOUT,
    E2BIG,
    ECHILD,
    ENODEV,
    ENXIO,
);

impl From<crate::memory::Fault> for Errno {
    fn from(_: crate::memory::Fault) -> Self {
        Errno::EFAULT
    }
}

impl From<crate::memory::CStrError> for Errno {
    fn from(e: crate::memory::CStrError) -> Self {
        match e {
            crate::memory::CStrError::Fault => Errno::EFAULT,
            crate::memory::CStrError::TooLong => Errno::ENAMETOOLONG,
        }
    }
}

/// Result of a system call: the value for RAX, or an errno.
pub type SysResult = Result<u64, Errno>;

/// Encodes a result the way the Linux syscall ABI returns it in RAX.
pub fn to_rax(r: SysResult) -> u64 {
    match r {
        Ok(v) => v,
        Err(Errno(e)) => (-i64::from(e)).cast_unsigned(),
    }
}
