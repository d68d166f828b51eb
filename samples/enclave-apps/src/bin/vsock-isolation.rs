//! Isolation probe: tries every channel an enclave must not have and prints one line per try,
//! `<what> <errno name> <errno>` (or `<what> OK` if it unexpectedly worked). Expected: the
//! socket families give EAFNOSUPPORT, writes and creations in the image tree give EROFS, and
//! vsock connects to anything but the parent are refused.

use std::io::Error;

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EROFS => "EROFS",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EINVAL => "EINVAL",
        _ => "OTHER",
    }
}

fn report(what: &str, r: Result<(), Error>) {
    match r {
        Ok(()) => println!("{what} OK"),
        Err(e) => {
            let n = e.raw_os_error().unwrap_or(0);
            println!("{what} {} {n}", errno_name(n));
        }
    }
}

fn socket(domain: i32, ty: i32, proto: i32) -> Result<(), Error> {
    // SAFETY: socket() takes no pointers.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: closes the descriptor just created.
    unsafe { libc::close(fd) };
    Ok(())
}

fn main() {
    report("tcp", socket(libc::AF_INET, libc::SOCK_STREAM, 0));
    report("udp", socket(libc::AF_INET, libc::SOCK_DGRAM, 0));
    report("tcp6", socket(libc::AF_INET6, libc::SOCK_STREAM, 0));
    report("unix", socket(libc::AF_UNIX, libc::SOCK_STREAM, 0));
    report("netlink", socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE));
    report("std-tcp-connect", std::net::TcpStream::connect("127.0.0.1:80").map(drop));
    report("std-udp-bind", std::net::UdpSocket::bind("0.0.0.0:0").map(drop));
    report("create-file", std::fs::write("/new-file", b"x"));
    report(
        "write-existing",
        std::fs::OpenOptions::new()
            .write(true)
            .open("/init")
            .map(drop),
    );
    report(
        "append-existing",
        std::fs::OpenOptions::new()
            .append(true)
            .open("/init")
            .map(drop),
    );
    report("mkdir", std::fs::create_dir("/newdir"));
    report("remove", std::fs::remove_file("/init"));
    report(
        "vsock-other-cid",
        sdk::enclave::VsockStream::connect(&sdk::enclave::VsockAddr::new(7, 5000)).map(drop),
    );
    println!("isolation probe done");
}
