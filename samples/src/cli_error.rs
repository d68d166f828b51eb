//! How the sample binaries (`kms-server`, `vsock-proxy`) report a fatal error: the message and
//! every cause on stderr, or `{"Error": …, "Causes": […]}` on stdout with `--json`.

/// Prints `error` and its causes as `program: error: … : cause` (or JSON with `json`).
pub fn print_error(program: &str, error: &(dyn std::error::Error + 'static), json: bool) {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "Error": error.to_string(), "Causes": causes })
        );
    } else {
        let mut line = format!("{program}: error: {error}");
        for c in causes {
            line.push_str(": ");
            line.push_str(&c);
        }
        eprintln!("{line}");
    }
}
