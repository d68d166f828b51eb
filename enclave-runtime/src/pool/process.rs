//! Telling a live VMM from a dead one: a pid plus its start time (`/proc/<pid>/stat`
//! field 22, clock ticks since boot) identifies a process even after the pid is reused.

/// Start time of `pid`, or `None` if it does not exist or is a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Whether `pid` is alive and started at `start`.
pub fn is_same_live_process(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Extracts the start time from a `/proc/<pid>/stat` line; `None` for zombies and dead tasks.
fn parse_stat(stat: &str) -> Option<u64> {
    // comm (field 2) may contain spaces and ')'; fields after the last ')' start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" || state == "x" {
        return None;
    }
    // field 3 was `state`; field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time() {
        let me = start_time(std::process::id()).unwrap();
        assert!(is_same_live_process(std::process::id(), me));
        assert!(!is_same_live_process(std::process::id(), me + 1));
        let line = "42 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 1234 20";
        assert_eq!(parse_stat(line), Some(1234));
        assert_eq!(parse_stat(&line.replace(" S ", " Z ")), None);
    }
}
