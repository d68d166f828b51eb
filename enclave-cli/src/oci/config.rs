//! The image config (Entrypoint, Cmd, Env, WorkingDir, platform, diff_ids) and what follows
//! from it: the program's argv and environment, its working directory, and the program
//! itself, found in the tree (through `PATH` for a bare name) and checked to be an ELF the
//! enclave can run.

use serde::Deserialize;

use super::tree::{Node, Tree};
use super::OciError;

/// `PATH` when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The parts of an image config used here.
#[derive(Debug, Default, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// How to run the image.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// Layer digests.
    pub rootfs: RootFs,
}

/// `config` of the image config.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// Entrypoint argv.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments (or the whole argv without an Entrypoint).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Environment, `NAME=value`.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
}

/// `rootfs` of the image config.
#[derive(Debug, Default, Deserialize)]
pub struct RootFs {
    /// sha256 of each uncompressed layer tar, lowest first.
    pub diff_ids: Vec<String>,
}

/// Parses the config and checks it is for linux/amd64.
pub fn parse(data: &[u8]) -> Result<ImageConfig, OciError> {
    let config: ImageConfig = serde_json::from_slice(data).map_err(|source| OciError::Json {
        name: "the image config".to_owned(),
        source,
    })?;
    let arch_ok = config.architecture.is_empty() || config.architecture == "amd64";
    let os_ok = config.os.is_empty() || config.os == "linux";
    if !arch_ok || !os_ok {
        return Err(OciError::WrongPlatform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
        });
    }
    Ok(config)
}

/// The program's argv: Entrypoint, then `cmd` when given, else the image's Cmd.
pub fn argv(config: &ImageConfig, cmd: &[String]) -> Result<Vec<String>, OciError> {
    let run = config.config.as_ref();
    let mut argv: Vec<String> = run.and_then(|c| c.entrypoint.clone()).unwrap_or_default();
    if cmd.is_empty() {
        argv.extend(run.and_then(|c| c.cmd.clone()).unwrap_or_default());
    } else {
        argv.extend(cmd.iter().cloned());
    }
    if argv.first().is_none_or(String::is_empty) {
        return Err(OciError::NoProgram);
    }
    Ok(argv)
}

/// The image's Env with `extra` (`NAME=value`) replacing same-named entries or appended.
pub fn env(config: &ImageConfig, extra: &[String]) -> Vec<String> {
    let mut env: Vec<String> = config
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    for e in extra {
        let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match env
            .iter_mut()
            .find(|x| x.split_once('=').is_some_and(|(k, _)| k == name))
        {
            Some(slot) => slot.clone_from(e),
            None => env.push(e.clone()),
        }
    }
    env
}

/// The working directory (absolute, normalized), created in the tree when missing as Docker
/// does; `None` for the root.
pub fn working_dir(config: &ImageConfig, tree: &mut Tree) -> Result<Option<String>, OciError> {
    let raw = config
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .unwrap_or_default();
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    let cwd = format!("/{}", parts.join("/"));
    let bad = || OciError::BadWorkingDir { cwd: cwd.clone() };
    if parts.contains(&"..") {
        return Err(bad());
    }
    let resolved = tree.resolve(&cwd, true)?;
    match tree.get(&resolved) {
        Some(Node::Dir(_)) => {}
        Some(_) => return Err(bad()),
        None => {
            if let Some(placed) = tree.place("WorkingDir", &resolved)? {
                tree.insert(placed, Node::Dir(0o755))?;
            }
        }
    }
    Ok(Some(cwd))
}

/// Finds the program `argv0` in the tree: a path (relative to `cwd`) or a name looked up in
/// `PATH` from `env`. Returns its resolved path (relative, no leading `/`).
pub fn find_program(
    tree: &Tree,
    argv0: &str,
    env: &[String],
    cwd: Option<&str>,
) -> Result<String, OciError> {
    let candidates: Vec<String> = if argv0.contains('/') {
        if argv0.starts_with('/') {
            vec![argv0.to_owned()]
        } else {
            vec![format!("{}/{argv0}", cwd.unwrap_or(""))]
        }
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{argv0}", d.trim_end_matches('/')))
            .collect()
    };
    for c in &candidates {
        let resolved = tree.resolve(c, true)?;
        match tree.get(&resolved) {
            Some(Node::File(mode, _)) if mode & 0o111 != 0 => return Ok(resolved),
            Some(_) if argv0.contains('/') => {
                return Err(OciError::ProgramNotFile { path: resolved })
            }
            _ => {}
        }
    }
    Err(OciError::ProgramMissing {
        program: argv0.to_owned(),
        looked: candidates.join(", "),
    })
}

/// Checks the program is an ELF the enclave can run: static, or dynamic with its interpreter
/// present in the tree (the runtime's dynamic support loads it from there).
pub fn check_program(tree: &Tree, path: &str) -> Result<(), OciError> {
    let Some(Node::File(_, data)) = tree.get(path) else {
        return Err(OciError::ProgramNotFile {
            path: path.to_owned(),
        });
    };
    match enclave_runtime::elf::plan(data) {
        Ok(_) => Ok(()),
        Err(enclave_runtime::elf::ElfError::Dynamic(interpreter)) => {
            let resolved = tree.resolve(&interpreter, true)?;
            match tree.get(&resolved) {
                Some(Node::File(..)) => {
                    tracing::warn!(
                        program = path,
                        interpreter = interpreter.as_str(),
                        "the program is dynamically linked; its interpreter is in the image"
                    );
                    Ok(())
                }
                _ => Err(OciError::NoInterpreter {
                    path: path.to_owned(),
                    interpreter,
                }),
            }
        }
        Err(source) => Err(OciError::ProgramElf {
            path: path.to_owned(),
            source,
        }),
    }
}
