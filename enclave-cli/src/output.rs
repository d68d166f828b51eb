//! Printing: JSON for scripts, the full error chain for people, tracing set-up.

use serde::Serialize;

/// Sets up `tracing` on stderr; `RUST_LOG` overrides the level.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print_text(&text)
}

/// Writes `text` to stdout. A reader that went away (`… | head`) ends the output quietly, as
/// it does for other Unix tools; any other write error is reported.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// Prints an error and every cause. With `--json`, as `{"Error": ..., "Causes": [...]}` on stdout.
pub fn print_error(e: &anyhow::Error, json: bool) {
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if json {
        let v = serde_json::json!({ "Error": e.to_string(), "Causes": causes });
        let _ = print_text(&format!("{v}\n"));
        return;
    }
    eprintln!("error: {e}");
    for c in causes {
        eprintln!("  caused by: {c}");
    }
}
