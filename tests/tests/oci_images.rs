//! OCI images built by standard tools (`umoci`, `skopeo`, from Debian's packages; no registry) become
//! enclave images with `build-enclave --oci-dir/--oci-archive`: reproducibly, with the
//! image's layers and whiteouts applied, checked by `verify-build`, and run in an enclave
//! with the image's Entrypoint/Cmd, Env and WorkingDir.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tests::{guest_program, PoolSpec, TestEnv};

/// Where the probe goes in the image (found through PATH as `oci-probe`).
const PROBE_DIR: &str = "usr/local/bin";

fn run_tool(program: &str, args: &[&OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with scripts/setup.sh (apt-get install umoci skopeo)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn umoci(args: &[&str], paths: &[&Path]) {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend(paths.iter().map(|p| p.as_os_str()));
    run_tool("umoci", &all);
}

/// Builds an OCI layout in `dir`/layout with umoci: layer 1 holds the probe, a data file,
/// a file to delete and a `/bin` symlink; layer 2 deletes that file (a whiteout); the config
/// sets Entrypoint, Cmd, Env and WorkingDir. Returns the layout directory.
fn build_layout(dir: &Path) -> PathBuf {
    let probe = guest_program("oci_probe").unwrap_or_else(|e| panic!("building oci_probe: {e}"));
    let layout = dir.join("layout");
    let image = format!("{}:latest", layout.display());
    let bundle = dir.join("bundle");
    umoci(&["init", "--layout"], &[&layout]);
    umoci(&["new", "--image", &image], &[]);

    umoci(&["unpack", "--rootless", "--image", &image], &[&bundle]);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join(PROBE_DIR)).expect("mkdir bin");
    std::fs::create_dir_all(rootfs.join("srv/app")).expect("mkdir srv/app");
    std::fs::copy(&probe, rootfs.join(PROBE_DIR).join("oci-probe")).expect("copy probe");
    std::fs::write(rootfs.join("srv/app/data.txt"), "hello from the image\n").expect("data");
    std::fs::write(rootfs.join("srv/app/old.txt"), "deleted by layer 2\n").expect("old");
    std::os::unix::fs::symlink("usr/local/bin", rootfs.join("bin")).expect("symlink");
    umoci(&["repack", "--image", &image], &[&bundle]);
    std::fs::remove_dir_all(&bundle).expect("remove bundle");

    umoci(&["unpack", "--rootless", "--image", &image], &[&bundle]);
    std::fs::remove_file(bundle.join("rootfs/srv/app/old.txt")).expect("rm old");
    umoci(&["repack", "--image", &image], &[&bundle]);
    std::fs::remove_dir_all(&bundle).expect("remove bundle");

    umoci(
        &[
            "config",
            "--image",
            &image,
            "--config.entrypoint",
            "oci-probe",
            "--config.cmd",
            "first",
            "--config.cmd",
            "two words",
            "--config.env",
            "GREETING=hello from oci",
            "--config.env",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "--config.workingdir",
            "/srv/app",
        ],
        &[],
    );
    layout
}

/// `build-enclave` of `source` (e.g. `--oci-dir DIR`) with `extra` flags into `out`.
fn build(env: &TestEnv, source: &[&OsStr], extra: &[&str], out: &Path) -> Vec<u8> {
    let mut args: Vec<&OsStr> = vec![OsStr::new("build-enclave")];
    args.extend(source);
    args.extend(extra.iter().map(OsStr::new));
    args.extend([OsStr::new("--output-file"), out.as_os_str()]);
    env.cli(&args).ok();
    std::fs::read(out).expect("read built EIF")
}

#[test]
fn umoci_layout_builds_reproducibly_and_verify_build_names_a_changed_file() {
    let env = TestEnv::new().expect("test env");
    let layout = build_layout(env.root());
    let dir_source = [OsStr::new("--oci-dir"), layout.as_os_str()];
    let a = build(&env, &dir_source, &[], &env.root().join("a.eif"));
    let b = build(&env, &dir_source, &[], &env.root().join("b.eif"));
    assert!(a == b, "two builds of the same OCI layout differ");

    // The same image as an `oci-archive:` (a tar of the layout) gives the same bytes.
    let archive = env.root().join("image.tar");
    run_tool(
        "tar",
        &[
            OsStr::new("-C"),
            layout.as_os_str(),
            OsStr::new("-cf"),
            archive.as_os_str(),
            OsStr::new("."),
        ],
    );
    let archive_source = [OsStr::new("--oci-archive"), archive.as_os_str()];
    let c = build(&env, &archive_source, &[], &env.root().join("c.eif"));
    assert!(
        a == c,
        "the archive and the directory give different images"
    );

    // skopeo's legacy `docker save` form (manifest.json, layer tars, symlinked repeats) and
    // its `oci-archive:` form give the same bytes too.
    for (i, dest) in ["docker-archive", "oci-archive"].iter().enumerate() {
        let out = env.root().join(format!("{dest}.tar"));
        let src = format!("oci:{}:latest", layout.display());
        let dst = format!("{dest}:{}:app:1", out.display());
        run_tool(
            "skopeo",
            &[
                OsStr::new("--insecure-policy"),
                OsStr::new("copy"),
                OsStr::new(&src),
                OsStr::new(&dst),
            ],
        );
        let source = [OsStr::new("--oci-archive"), out.as_os_str()];
        let eif = build(&env, &source, &[], &env.root().join(format!("s{i}.eif")));
        assert!(a == eif, "skopeo's {dest} gives a different image");
    }

    // The tree: layer 1's files, layer 2's whiteout applied, the program also as /init.
    let eif = env.root().join("a.eif");
    let described = env
        .cli([
            OsStr::new("describe-eif"),
            OsStr::new("--eif-path"),
            eif.as_os_str(),
        ])
        .ok()
        .json();
    let files: Vec<&str> = described["Files"]
        .as_array()
        .expect("Files")
        .iter()
        .filter_map(|f| f["Path"].as_str())
        .collect();
    for want in [
        "/init",
        "/usr/local/bin/oci-probe",
        "/srv/app/data.txt",
        "/bin",
    ] {
        assert!(files.contains(&want), "{want} missing from {files:?}");
    }
    assert!(
        !files.contains(&"/srv/app/old.txt"),
        "the whiteout of layer 2 was not applied: {files:?}"
    );
    // The metadata records which image it came from and what was taken from its config.
    let info = &described["Metadata"]["DockerInfo"];
    assert!(
        info["Id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:") && id.len() == 71),
        "{info}"
    );
    assert_eq!(info["Program"], "/usr/local/bin/oci-probe", "{info}");
    assert_eq!(info["Config"]["WorkingDir"], "/srv/app", "{info}");

    let verify = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![OsStr::new("verify-build")];
        args.extend(dir_source);
        args.extend(extra.iter().map(OsStr::new));
        args.extend([OsStr::new("--eif-path"), eif.as_os_str()]);
        env.cli(&args)
    };
    let same = verify(&[]);
    same.ok();
    assert!(same.stdout.starts_with("MATCH"), "{same}");

    // Against build-enclave's printed measurements (--pcrs) and one PCR given by hand.
    let pcrs_file = env.root().join("pcrs.json");
    let mut args: Vec<&OsStr> = vec![OsStr::new("build-enclave")];
    args.extend(dir_source);
    let scratch = env.root().join("scratch.eif");
    args.extend([OsStr::new("--output-file"), scratch.as_os_str()]);
    let printed = env.cli(&args);
    printed.ok();
    std::fs::write(&pcrs_file, &printed.stdout).expect("write pcrs");
    let pcr0 = printed.json()["Measurements"]["PCR0"]
        .as_str()
        .expect("PCR0")
        .to_owned();
    let by_pcrs = |extra: &[&str], against: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec![OsStr::new("verify-build"), OsStr::new("--json")];
        args.extend(dir_source);
        args.extend(extra.iter().map(OsStr::new));
        args.extend(against);
        env.cli(&args)
    };
    let ok = by_pcrs(&[], &[OsStr::new("--pcrs"), pcrs_file.as_os_str()]);
    ok.ok();
    assert_eq!(ok.json()["Match"], true, "{ok}");
    let other_cmd = by_pcrs(
        &["--cmd", "other"],
        &[OsStr::new("--pcr0"), OsStr::new(&pcr0)],
    );
    assert_eq!(other_cmd.code(), Some(2), "{other_cmd}");
    let report = other_cmd.json();
    assert_eq!(report["Match"], false, "{other_cmd}");
    assert_eq!(report["Pcrs"][0]["Pcr"], "PCR0", "{other_cmd}");
    assert_eq!(report["Pcrs"][0]["Match"], false, "{other_cmd}");

    let extra = env.root().join("extra.txt");
    std::fs::write(&extra, "one more file").expect("write extra");
    let spec = format!("{}:/srv/app/data.txt", extra.display());
    let differs = verify(&["--file", &spec]);
    assert_eq!(differs.code(), Some(2), "{differs}");
    assert!(differs.stdout.contains("PCR0: DIFFERS"), "{differs}");
    assert!(
        differs.stdout.contains("section ramdisk 0: differs"),
        "{differs}"
    );
    assert!(
        differs
            .stdout
            .contains("ramdisk 0 /srv/app/data.txt: content (21 → 13 bytes)"),
        "{differs}"
    );
    // Only data.txt changed.
    assert_eq!(
        differs.stdout.matches("ramdisk 0 /").count(),
        1,
        "{differs}"
    );
}

#[test]
fn oci_errors_name_the_fix() {
    let env = TestEnv::new().expect("test env");
    let empty = env.root().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = env.cli([
        OsStr::new("build-enclave"),
        OsStr::new("--oci-dir"),
        empty.as_os_str(),
        OsStr::new("--output-file"),
        env.root().join("x.eif").as_os_str(),
    ]);
    out.fails_with(1, &["neither index.json", "manifest.json"]);

    let layout = build_layout(env.root());
    let out = env.cli([
        OsStr::new("build-enclave"),
        OsStr::new("--oci-dir"),
        layout.as_os_str(),
        OsStr::new("--oci-max-size-mib"),
        OsStr::new("0"),
        OsStr::new("--output-file"),
        env.root().join("x.eif").as_os_str(),
    ]);
    out.fails_with(1, &["over the 0 MiB limit", "--oci-max-size-mib"]);

    let extra = env.root().join("extra.txt");
    std::fs::write(&extra, "x").expect("write extra");
    let into_dir = format!("{}:/srv/app", extra.display());
    let out = env.cli([
        OsStr::new("build-enclave"),
        OsStr::new("--oci-dir"),
        layout.as_os_str(),
        OsStr::new("--file"),
        OsStr::new(&into_dir),
        OsStr::new("--output-file"),
        env.root().join("x.eif").as_os_str(),
    ]);
    out.fails_with(
        1,
        &["--file destination /srv/app is a directory of the image"],
    );

    // A --file under the image's /bin symlink lands where it points.
    let via_link = format!("{}:/bin/extra", extra.display());
    let eif = env.root().join("linked.eif");
    build(
        &env,
        &[OsStr::new("--oci-dir"), layout.as_os_str()],
        &["--file", &via_link],
        &eif,
    );
    let described = env
        .cli([
            OsStr::new("describe-eif"),
            OsStr::new("--eif-path"),
            eif.as_os_str(),
        ])
        .ok()
        .json();
    let files: Vec<&str> = described["Files"]
        .as_array()
        .expect("Files")
        .iter()
        .filter_map(|f| f["Path"].as_str())
        .collect();
    assert!(files.contains(&"/usr/local/bin/extra"), "{files:?}");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn umoci_image_runs_with_its_entrypoint_env_and_working_directory() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let layout = build_layout(env.root());
    let eif = env.root().join("probe.eif");
    build(
        &env,
        &[OsStr::new("--oci-dir"), layout.as_os_str()],
        &[],
        &eif,
    );
    let out = env.run_debug(&eif);
    assert_eq!(
        out.stdout_lines(),
        [
            "argv[0]=oci-probe",
            "argv[1]=first",
            "argv[2]=two words",
            "GREETING=hello from oci",
            "cwd=/srv/app",
            "data=hello from the image",
        ],
        "{out}"
    );
    assert_eq!(out.code(), Some(0), "{out}");
    env.assert_no_leftovers("oci_probe from an umoci image");
}
