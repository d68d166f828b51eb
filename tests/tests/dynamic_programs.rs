//! Dynamically linked programs built the ordinary way (gcc without -static, Rust without
//! crt-static), packed with `build-enclave --with-libs` and run by `ld.so` in debug-mode
//! enclaves; a missing library ends the program with ld.so's own message; a dynamic program
//! without its libraries is refused at build time, naming --with-libs.

use std::process::Command;

use tests::elf;
use tests::paths::guest_sources;
use tests::{guest_program, ImageSpec, PoolSpec, TestEnv, C_DYNAMIC_PROGRAMS};

/// The interpreter every x86_64 glibc program names.
const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";
/// Where Debian keeps glibc.
const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";
/// ld.so's exit status when it cannot load a program's libraries.
const LD_SO_FAILED: i32 = 127;

fn program(name: &str) -> std::path::PathBuf {
    guest_program(name).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

fn env_with_pool() -> TestEnv {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    env
}

#[test]
fn the_dynamic_guest_programs_are_dynamically_linked() {
    for name in C_DYNAMIC_PROGRAMS.iter().chain(&["rust-dyn-hello"]) {
        let info = elf::read(&program(name)).expect("read ELF");
        assert!(!info.is_static(), "{name} has no PT_INTERP");
    }
}

#[test]
fn a_dynamic_program_without_its_libraries_is_refused_naming_with_libs() {
    let env = TestEnv::new().expect("test env");
    let out = env.root().join("refused.eif");
    let binary = program("dyn_hello");
    env.cli([
        "build-enclave".as_ref(),
        "--binary".as_ref(),
        binary.as_os_str(),
        "--output-file".as_ref(),
        out.as_os_str(),
    ])
    .fails_with(1, &["dynamically linked", LD_SO, "--with-libs"]);
    assert!(!out.exists(), "no image may be written");
}

#[test]
fn with_libs_images_are_reproducible_and_hold_the_libraries() {
    let env = TestEnv::new().expect("test env");
    let spec = ImageSpec::default().with_libs();
    let a = std::fs::read(env.build_eif("dyn_hello", &spec)).expect("read image");
    let b = std::fs::read(env.build_eif("dyn_hello", &spec)).expect("read image");
    assert_eq!(a, b, "two --with-libs builds differ");
    let libm = std::fs::read("/lib/x86_64-linux-gnu/libm.so.6").expect("read host libm");
    let static_size = std::fs::read(env.build_eif("hello", &ImageSpec::default()))
        .expect("read image")
        .len();
    assert!(
        a.len() > libm.len() + static_size / 4,
        "the image ({} bytes) cannot hold libm ({} bytes) and libc",
        a.len(),
        libm.len()
    );
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn a_dynamic_c_program_runs_with_its_libraries() {
    let env = env_with_pool();
    let eif = env.build_eif("dyn_hello", &ImageSpec::default().with_libs().arg("5"));
    let out = env.run_debug(&eif);
    assert_eq!(
        out.stdout_lines(),
        vec![
            "hello from dynamic C",
            "argc=2",
            "sqrt2=1.4142",
            "copy=heap-42"
        ],
        "{out}"
    );
    assert_eq!(out.code(), Some(5), "{out}");
    env.assert_no_leftovers("dyn_hello");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn a_dynamic_rust_program_runs_with_its_libraries() {
    let env = env_with_pool();
    let eif = env.build_eif("rust-dyn-hello", &ImageSpec::default().with_libs().arg("3"));
    let out = env.run_debug(&eif);
    assert_eq!(
        out.stdout_lines(),
        vec![
            "hello from dynamic rust",
            "argc=2",
            "thread ok",
            "unwind ok",
            "cbrt=0.7937"
        ],
        "{out}"
    );
    assert_eq!(out.code(), Some(3), "{out}");
    env.assert_no_leftovers("rust-dyn-hello");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn dlopen_loads_a_library_from_the_image() {
    let env = env_with_pool();
    let plugin = program("libplugin");
    let spec = ImageSpec::default()
        .with_libs()
        .file(&plugin, "/usr/lib/x86_64-linux-gnu/libplugin.so");
    let out = env.run_debug(&env.build_eif("dyn_dlopen", &spec));
    assert_eq!(out.stdout_lines(), vec!["plugin_twice(21)=42"], "{out}");
    assert_eq!(out.code(), Some(0), "{out}");
    env.assert_no_leftovers("dyn_dlopen");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn a_missing_library_ends_the_program_with_ld_so_s_message() {
    let env = env_with_pool();
    // The interpreter and libc by hand, libm (which dyn_hello needs) left out.
    let spec = ImageSpec::default().file(LD_SO, LD_SO).file(LIBC, LIBC);
    let out = env.run_debug(&env.build_eif("dyn_hello", &spec));
    assert_eq!(
        out.stdout_lines(),
        vec![
            "/init: error while loading shared libraries: libm.so.6: cannot open shared object \
             file: No such file or directory"
        ],
        "{out}"
    );
    assert_eq!(out.code(), Some(LD_SO_FAILED), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    env.assert_no_leftovers("dyn_hello without libm");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn runpath_origin_libraries_are_collected_and_found() {
    let env = env_with_pool();
    // <root>/app/dyn_origin with DT_RUNPATH $ORIGIN/lib, and <root>/app/lib/libplugin.so.
    let app = env.root().join("app");
    let lib_dir = app.join("lib");
    std::fs::create_dir_all(&lib_dir).expect("create app/lib");
    std::fs::copy(program("libplugin"), lib_dir.join("libplugin.so")).expect("copy libplugin");
    let binary = app.join("dyn_origin");
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&binary)
        .arg(guest_sources().join("c-dyn").join("dyn_origin.c"))
        .arg("-L")
        .arg(&lib_dir)
        .args(["-lplugin", "-Wl,-rpath,$ORIGIN/lib"])
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc failed: {status}");
    let eif = env.root().join("origin.eif");
    env.cli([
        "build-enclave".as_ref(),
        "--binary".as_ref(),
        binary.as_os_str(),
        "--with-libs".as_ref(),
        "--output-file".as_ref(),
        eif.as_os_str(),
    ])
    .ok();
    let out = env.run_debug(&eif);
    assert_eq!(out.stdout_lines(), vec!["plugin_twice(4)=8"], "{out}");
    assert_eq!(out.code(), Some(0), "{out}");
    env.assert_no_leftovers("dyn_origin");
}
