//! The allowlist of remote endpoints, in AWS vsock-proxy's YAML format:
//!
//! ```yaml
//! allowlist:
//! - {address: kms.us-east-1.amazonaws.com, port: 443}
//! - {address: 127.0.0.1, port: 8000}
//! ```
//!
//! An address is a host name or an IP. A remote is allowed when an entry with its port names it
//! (host names compare case-insensitively, without a trailing dot), or when its address is an
//! allowlisted IP or an IP that an allowlisted host name of that port resolves to. The check is
//! made at start and again for every connection, against fresh resolutions.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Resolves `host:port` to socket addresses (the system resolver, or a fake in tests).
pub type Resolve = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// Resolves with the system resolver (`getaddrinfo`; IP literals need no lookup).
pub fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Errors of loading an allowlist or checking a remote against it.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    /// The file cannot be read.
    #[error(
        "cannot read the allowlist {path}: give an existing file with --config or \
         ENCLAVE_VSOCK_PROXY_CONFIG"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not YAML of the expected shape.
    #[error(
        "malformed allowlist {path} at {location}: expected `allowlist:` followed by \
         `- {{address: <host name or IP>, port: <1-65535>}}` lines"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// `line L, column C`, or `the whole document`.
        location: String,
        /// The YAML error.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// An entry has an empty address or port 0.
    #[error(
        "allowlist {path}, entry {index}: {problem}; give a host name or IP and a port 1-65535"
    )]
    BadEntry {
        /// The file.
        path: PathBuf,
        /// 1-based entry number.
        index: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The remote matches no entry.
    #[error(
        "{host}:{port} is not in the allowlist {path}: add `- {{address: {host}, port: {port}}}` \
         to it{detail}"
    )]
    NotAllowed {
        /// The remote host.
        host: String,
        /// The remote port.
        port: u16,
        /// The allowlist file.
        path: PathBuf,
        /// Extra detail (the resolved addresses), starting with `; ` when present.
        detail: String,
    },
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedRemote {
    /// Host name or IP.
    pub address: String,
    /// TCP port.
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistFile {
    allowlist: Vec<AllowedRemote>,
}

/// A loaded allowlist.
#[derive(Debug, Clone)]
pub struct Allowlist {
    path: PathBuf,
    entries: Vec<AllowedRemote>,
}

/// Lower case, without brackets or a trailing dot.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl Allowlist {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, AllowlistError> {
        let text = std::fs::read_to_string(path).map_err(|source| AllowlistError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, AllowlistError> {
        let file: AllowlistFile =
            serde_yaml_ng::from_str(text).map_err(|source| AllowlistError::Parse {
                path: path.to_owned(),
                location: source.location().map_or_else(
                    || "the whole document".to_owned(),
                    |l| format!("line {}, column {}", l.line(), l.column()),
                ),
                source,
            })?;
        for (i, e) in file.allowlist.iter().enumerate() {
            let problem = if e.address.trim().is_empty() {
                Some("empty address")
            } else if e.port == 0 {
                Some("port 0")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(AllowlistError::BadEntry {
                    path: path.to_owned(),
                    index: i + 1,
                    problem,
                });
            }
        }
        Ok(Self {
            path: path.to_owned(),
            entries: file.allowlist,
        })
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[AllowedRemote] {
        &self.entries
    }

    /// The file the allowlist came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an entry with `port` names `host` itself.
    pub fn names(&self, host: &str, port: u16) -> bool {
        let host = normalize(host);
        self.entries
            .iter()
            .any(|e| e.port == port && normalize(&e.address) == host)
    }

    /// The IPs allowed on `port`: allowlisted IPs and what allowlisted host names resolve to
    /// now. Names that do not resolve are skipped (logged at debug level).
    pub fn allowed_ips(&self, port: u16, resolve: &Resolve) -> HashSet<IpAddr> {
        let mut ips = HashSet::new();
        for e in self.entries.iter().filter(|e| e.port == port) {
            let addr = normalize(&e.address);
            if let Ok(ip) = addr.parse::<IpAddr>() {
                ips.insert(ip);
                continue;
            }
            match resolve(&addr, port) {
                Ok(found) => ips.extend(found.iter().map(SocketAddr::ip)),
                Err(e) => {
                    tracing::debug!(address = %addr, error = %e, "allowlisted name does not resolve")
                }
            }
        }
        ips
    }

    /// The subset of `resolved` (the addresses `host:port` resolved to) that may be used: all
    /// of them when an entry names `host`, else those whose IP is allowed on `port`.
    pub fn permitted(
        &self,
        host: &str,
        port: u16,
        resolved: &[SocketAddr],
        resolve: &Resolve,
    ) -> Vec<SocketAddr> {
        if self.names(host, port) {
            return resolved.to_vec();
        }
        let ips = self.allowed_ips(port, resolve);
        resolved
            .iter()
            .filter(|a| ips.contains(&a.ip()))
            .copied()
            .collect()
    }

    /// The start-up check: `host:port` must be named by an entry, or resolve to an allowed IP.
    pub fn check(&self, host: &str, port: u16, resolve: &Resolve) -> Result<(), AllowlistError> {
        if self.names(host, port) {
            return Ok(());
        }
        let not_allowed = |detail: String| AllowlistError::NotAllowed {
            host: host.to_owned(),
            port,
            path: self.path.clone(),
            detail,
        };
        let resolved =
            resolve(host, port).map_err(|e| not_allowed(format!("; it does not resolve ({e})")))?;
        if self.permitted(host, port, &resolved, resolve).is_empty() {
            let list: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
            return Err(not_allowed(format!(
                "; it resolves to [{}], which no entry allows",
                list.join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn parse(text: &str) -> Result<Allowlist, AllowlistError> {
        Allowlist::parse(text, Path::new("test.yaml"))
    }

    fn sa(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("ip"), port)
    }

    const AWS: &str =
        "allowlist:\n- {address: kms.us-east-1.amazonaws.com, port: 443}\n- {address: 127.0.0.1, port: 8000}\n";

    #[test]
    fn parses_the_aws_format() {
        let a = parse(AWS).expect("parse");
        assert_eq!(
            a.entries(),
            [
                AllowedRemote {
                    address: "kms.us-east-1.amazonaws.com".into(),
                    port: 443
                },
                AllowedRemote {
                    address: "127.0.0.1".into(),
                    port: 8000
                }
            ]
        );
        let block = parse("allowlist:\n  - address: example.com\n    port: 80\n").expect("block");
        assert_eq!(block.entries().len(), 1);
    }

    #[test]
    fn malformed_files_say_where() {
        let err = parse("allowlist:\n- {address: a, port: 1}\n- {address: b, port: [}\n")
            .expect_err("bad yaml");
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        for (text, want) in [
            ("allowlist:\n- {address: a, port: 70000}\n", "line 2"),
            ("allowlist:\n- {address: a}\n", "line 2"),
            (
                "allowlist:\n- {address: a, port: 1, proto: udp}\n",
                "line 2",
            ),
            ("allow_list:\n- {address: a, port: 1}\n", "line 1"),
        ] {
            let msg = parse(text).expect_err(text).to_string();
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
        let msg = parse("allowlist:\n- {address: '', port: 1}\n")
            .expect_err("empty")
            .to_string();
        assert!(msg.contains("entry 1: empty address"), "{msg}");
        let msg = parse("allowlist:\n- {address: a, port: 1}\n- {address: b, port: 0}\n")
            .expect_err("port 0")
            .to_string();
        assert!(msg.contains("entry 2: port 0"), "{msg}");
    }

    #[test]
    fn names_match_by_host_and_port() {
        let a = parse(AWS).expect("parse");
        assert!(a.names("KMS.us-east-1.amazonaws.com.", 443));
        assert!(!a.names("kms.us-east-1.amazonaws.com", 8000));
        assert!(a.names("127.0.0.1", 8000));
        assert!(!a.names("127.0.0.2", 8000));
    }

    #[test]
    fn ips_match_fresh_resolutions() {
        let a = parse(
            "allowlist:\n- {address: svc.internal, port: 443}\n- {address: 10.9.9.9, port: 443}\n",
        )
        .expect("parse");
        // svc.internal moves from 10.0.0.1 to 10.0.0.2 after the first resolution.
        let calls = AtomicUsize::new(0);
        let resolve = move |host: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            assert_eq!(host, "svc.internal");
            let n = calls.fetch_add(1, Ordering::Relaxed);
            Ok(vec![sa(if n == 0 { "10.0.0.1" } else { "10.0.0.2" }, port)])
        };
        let alias = [sa("10.0.0.1", 443)];
        assert_eq!(a.permitted("alias.internal", 443, &alias, &resolve), alias);
        assert!(a
            .permitted("alias.internal", 443, &alias, &resolve)
            .is_empty());
        let literal = [sa("10.9.9.9", 443), sa("10.0.0.7", 443)];
        assert_eq!(
            a.permitted("other", 443, &literal, &resolve),
            [sa("10.9.9.9", 443)]
        );
    }

    #[test]
    fn start_check_explains_refusals() {
        let a = parse(AWS).expect("parse");
        let none = |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Ok(vec![]) };
        a.check("127.0.0.1", 8000, &none).expect("allowed by name");
        let msg = a
            .check("127.0.0.1", 9000, &system_resolve)
            .expect_err("port")
            .to_string();
        assert!(
            msg.contains("127.0.0.1:9000 is not in the allowlist test.yaml")
                && msg.contains("[127.0.0.1]"),
            "{msg}"
        );
        let fail = |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> {
            Err(io::Error::other("no such host"))
        };
        let msg = a
            .check("evil.example", 443, &fail)
            .expect_err("unresolvable")
            .to_string();
        assert!(msg.contains("does not resolve (no such host)"), "{msg}");
    }
}
