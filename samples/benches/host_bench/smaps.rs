//! The VMM's own memory from `/proc/PID/smaps`: resident and private kB of every mapping but
//! the guest memory (the largest mapping at least as big as the guest).

/// One mapping's figures, kB.
#[derive(Debug, Default, Clone)]
struct Mapping {
    header: String,
    size_kb: u64,
    rss_kb: u64,
    private_kb: u64,
}

/// What the VMM holds beyond guest memory, kB.
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// Resident (shared pages counted whole) outside the guest mapping.
    pub rss_kb: u64,
    /// Private (clean + dirty) outside the guest mapping.
    pub private_kb: u64,
    /// Resident pages of the guest mapping itself.
    pub guest_rss_kb: u64,
}

fn kb(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn parse(text: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let is_header = first.contains('-')
            && first
                .split('-')
                .all(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
        if is_header {
            maps.push(Mapping {
                header: line.to_owned(),
                ..Mapping::default()
            });
            continue;
        }
        let Some(m) = maps.last_mut() else { continue };
        if line.starts_with("Size:") {
            m.size_kb = kb(line);
        } else if line.starts_with("Rss:") {
            m.rss_kb = kb(line);
        } else if ["Private_Clean:", "Private_Dirty:", "Private_Hugetlb:"]
            .iter()
            .any(|k| line.starts_with(k))
        {
            m.private_kb += kb(line);
        }
    }
    maps
}

/// The overhead of VMM `pid` whose guest has `guest_mib`; `Err` names what failed.
pub fn overhead(pid: u32, guest_mib: u64) -> Result<Overhead, String> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let maps = parse(&text);
    let guest_kb = guest_mib * 1024;
    let guest = maps
        .iter()
        .enumerate()
        .filter(|(_, m)| m.size_kb >= guest_kb)
        .max_by_key(|(_, m)| m.size_kb)
        .map(|(i, _)| i)
        .ok_or_else(|| format!("no mapping of {guest_mib} MiB or more in {path}"))?;
    let mut o = Overhead {
        rss_kb: 0,
        private_kb: 0,
        guest_rss_kb: maps[guest].rss_kb,
    };
    for (i, m) in maps.iter().enumerate() {
        if i != guest {
            o.rss_kb += m.rss_kb;
            o.private_kb += m.private_kb;
        }
    }
    debug_guest_mapping(&maps[guest].header);
    Ok(o)
}

/// Names the guest mapping on stderr once per run with `HOST_BENCH_DEBUG=1`.
fn debug_guest_mapping(header: &str) {
    if std::env::var_os("HOST_BENCH_DEBUG").is_some() {
        eprintln!("bench: guest mapping: {header}");
    }
}
