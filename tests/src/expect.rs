//! What the guest programs print, for native reference runs and enclave runs alike.

/// First line of `hello`.
pub const HELLO_BANNER: &str = "hello from enclave";
/// First line of `rust-hello`.
pub const RUST_HELLO_BANNER: &str = "hello from rust enclave";
/// What `hello` and `rust-hello` write to stderr.
pub const STDERR_LINE: &str = "stderr works";
/// The only line of `spin` before it loops.
pub const SPIN_LINE: &str = "spinning";
/// Exit status of `exit_code`.
pub const EXIT_CODE_STATUS: i32 = 42;
/// Exit status of `hello`/`rust-hello` when a check fails.
pub const CHECK_FAILED_STATUS: i32 = 99;
/// Last line of `hostile`.
pub const HOSTILE_DONE: &str = "hostile done";

/// The system calls `hostile` exercises, in the order of its `ok <name>` lines.
pub const HOSTILE_CALLS: &[&str] = &[
    "read",
    "write",
    "pread64",
    "readv",
    "writev",
    "openat",
    "newfstatat",
    "fstat",
    "statx",
    "getdents64",
    "lseek",
    "clock_gettime",
    "gettimeofday",
    "nanosleep",
    "clock_nanosleep",
    "getrandom",
    "uname",
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "rt_sigaction",
    "rt_sigprocmask",
    "sigaltstack",
    "poll",
    "ioctl",
    "sched_getaffinity",
    "close",
];

/// The complete stdout of a clean `hostile` run.
pub fn hostile_stdout() -> String {
    let mut out: String = HOSTILE_CALLS.iter().map(|c| format!("ok {c}\n")).collect();
    out.push_str(HOSTILE_DONE);
    out.push('\n');
    out
}

/// Sum of the bytes as a wrapping `u32`: the `sum=` line of `hello` and `rust-hello`.
pub fn byte_sum(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |s, b| s.wrapping_add(u32::from(*b)))
}

/// The inputs of one `hello`/`rust-hello` run, to compute its expected stdout.
#[derive(Debug, Clone, Default)]
pub struct HelloRun<'a> {
    /// argv, including argv\[0\].
    pub argv: &'a [&'a str],
    /// The environment, `KEY=value`, in the order the program sees it.
    pub env: &'a [&'a str],
    /// Contents of `READ_FILE`, if set.
    pub file: Option<&'a [u8]>,
    /// Names in `LIST_DIR` (without `.` and `..`), if set; `hello` only.
    pub dir: Option<&'a [&'a str]>,
    /// Value of `EXIT_CODE` (0 when unset).
    pub exit_code: i32,
}

fn head(banner: &str, run: &HelloRun<'_>, out: &mut Vec<String>) {
    out.push(banner.to_owned());
    out.push(format!("argc={}", run.argv.len()));
    out.extend(
        run.argv
            .iter()
            .enumerate()
            .map(|(i, a)| format!("argv[{i}]={a}")),
    );
    out.extend(run.env.iter().map(|e| format!("env:{e}")));
    if let Some(data) = run.file {
        out.push(format!("size={}", data.len()));
        out.push(format!("sum={}", byte_sum(data)));
    }
}

/// The stdout lines of the C `hello`.
pub fn hello_lines(run: &HelloRun<'_>) -> Vec<String> {
    let mut out = Vec::new();
    head(HELLO_BANNER, run, &mut out);
    if let Some(names) = run.dir {
        let mut names: Vec<&str> = names.to_vec();
        names.sort_unstable();
        out.extend(names.iter().map(|n| format!("dir:{n}")));
    }
    for line in ["time ok", "random ok", "memory ok", "sysname=Linux"] {
        out.push(line.to_owned());
    }
    out.push(format!("exiting with {}", run.exit_code));
    out
}

/// The stdout lines of `rust-hello`.
pub fn rust_hello_lines(run: &HelloRun<'_>) -> Vec<String> {
    let mut out = Vec::new();
    head(RUST_HELLO_BANNER, run, &mut out);
    for line in ["alloc ok", "time ok"] {
        out.push(line.to_owned());
    }
    out.push(format!("exiting with {}", run.exit_code));
    out
}
