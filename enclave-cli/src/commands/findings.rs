//! Findings of the checking commands (`validate-eif`, `doctor`): each check says ok, warning or
//! error, what it found and, when not ok, the fix; printed as a table for people or as JSON.

use serde::Serialize;

pub use enclave_runtime::error_chain::chain;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but worth fixing.
    Warning,
    /// `run-enclave` would fail.
    Error,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Finding {
    /// Short name of the check.
    pub check: String,
    /// Its result.
    pub level: Level,
    /// What was found.
    pub message: String,
    /// What fixes it (the exact command where there is one); absent when ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A list of findings being built.
#[derive(Debug, Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    /// Adds an ok finding.
    pub fn ok(&mut self, check: &str, message: impl Into<String>) {
        self.push(check, Level::Ok, message.into(), None);
    }

    /// Adds a warning with its fix.
    pub fn warn(&mut self, check: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Warning, message.into(), Some(fix.into()));
    }

    /// Adds an error with its fix.
    pub fn error(&mut self, check: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Level::Error, message.into(), Some(fix.into()));
    }

    fn push(&mut self, check: &str, level: Level, message: String, fix: Option<String>) {
        self.0.push(Finding {
            check: check.to_owned(),
            level,
            message,
            fix,
        });
    }

    /// Whether any finding is an error.
    pub fn has_error(&self) -> bool {
        self.0.iter().any(|f| f.level == Level::Error)
    }

    /// Number of findings at `level`.
    pub fn count(&self, level: Level) -> usize {
        self.0.iter().filter(|f| f.level == level).count()
    }

    /// The findings as a table: one line per finding, the fix indented below.
    pub fn render(&self) -> String {
        let width = self.0.iter().map(|f| f.check.len()).max().unwrap_or(0);
        let mut out = String::new();
        for f in &self.0 {
            let tag = match f.level {
                Level::Ok => "ok     ",
                Level::Warning => "WARNING",
                Level::Error => "ERROR  ",
            };
            out.push_str(&format!("{tag} {:width$}  {}\n", f.check, f.message));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("        {:width$}  fix: {fix}\n", ""));
            }
        }
        out
    }

    /// Prints the report: `value` (JSON the caller built around the findings) with `--json`,
    /// else the table and a last line `subject: N error(s), M warning(s)`. Returns the exit
    /// code: 1 when any finding is an error.
    pub fn print(
        &self,
        json: bool,
        value: &serde_json::Value,
        subject: &str,
    ) -> anyhow::Result<i32> {
        if json {
            crate::output::print_json(value)?;
        } else {
            crate::output::print_text(&format!(
                "{}{subject}: {} error(s), {} warning(s)\n",
                self.render(),
                self.count(Level::Error),
                self.count(Level::Warning)
            ))?;
        }
        Ok(i32::from(self.has_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_decide_and_render_names_the_fix() {
        let mut f = Findings::default();
        f.ok("a", "fine");
        assert!(!f.has_error());
        f.warn("b", "meh", "do x");
        assert!(!f.has_error());
        f.error("c", "broken", "run `y`");
        assert!(f.has_error());
        assert_eq!(f.count(Level::Warning), 1);
        let text = f.render();
        assert!(text.contains("ERROR   c  broken"), "{text}");
        assert!(text.contains("fix: run `y`"), "{text}");
        let json = serde_json::to_value(&f.0).unwrap();
        assert_eq!(json[2]["Level"], "error");
        assert!(json[0].get("Fix").is_none());
    }
}
