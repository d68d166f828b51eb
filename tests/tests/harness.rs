//! The harness finds (or builds) the `enclave` CLI without deadlocking on the outer cargo.

#[test]
fn enclave_bin_is_found_or_built() {
    let bin = tests::enclave_bin();
    assert!(bin.is_file(), "{} missing", bin.display());
    assert_eq!(bin.file_name().and_then(|n| n.to_str()), Some("enclave"));
}
