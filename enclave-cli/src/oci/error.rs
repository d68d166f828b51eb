//! `OciError`: every way reading an OCI or `docker save` image can fail, each naming the fix.

use std::path::PathBuf;

/// Why an OCI image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file of the layout or archive could not be read.
    #[error("Cannot read {path}: check the path and its permissions")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The archive is not a tar file.
    #[error("{path} is not a tar archive: give --oci-archive the file written by `docker save`, `podman save` or `skopeo copy ... oci-archive:FILE`")]
    NotTar {
        /// The archive.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The archive itself is compressed.
    #[error("{path} is {what}-compressed: decompress it first (e.g. `gunzip -k`, `zstd -d`), then give the .tar")]
    CompressedArchive {
        /// The archive.
        path: PathBuf,
        /// gzip, zstd, xz or bzip2.
        what: &'static str,
    },
    /// Neither `index.json` nor `manifest.json`.
    #[error("{path} holds neither index.json (OCI layout) nor manifest.json (docker save): give the directory or archive of an image")]
    NoLayout {
        /// The directory or archive.
        path: PathBuf,
    },
    /// A file named by the image is missing.
    #[error(
        "The image has no {name}: the layout or archive is incomplete; export the image again"
    )]
    Missing {
        /// Name inside the layout.
        name: String,
    },
    /// A JSON document does not parse.
    #[error("{name} is not valid JSON of the expected shape: the image is damaged or not an OCI/Docker image")]
    Json {
        /// Name inside the layout.
        name: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A digest is not `sha256:` and 64 lowercase hex digits.
    #[error("Digest {digest:?} is not sha256:<64 hex digits>: only sha256 blobs are supported")]
    BadDigest {
        /// The digest.
        digest: String,
    },
    /// A blob's content does not match its digest.
    #[error("{name} does not match its digest: expected {expected}, found sha256:{found}; the image is damaged or was tampered with, export it again")]
    DigestMismatch {
        /// The blob.
        name: String,
        /// The digest the image names.
        expected: String,
        /// Hex of the content's sha256.
        found: String,
    },
    /// Several images and no `--oci-ref` (or one that matches none).
    #[error("{reason}; the image holds: {available}: choose one with --oci-ref NAME")]
    Ambiguous {
        /// What went wrong.
        reason: String,
        /// The references found.
        available: String,
    },
    /// No manifest for linux/amd64.
    #[error("The image index has no linux/amd64 manifest (it has {platforms}): the enclave runs x86_64 Linux programs; build or pull the image for linux/amd64")]
    NoAmd64 {
        /// The platforms found.
        platforms: String,
    },
    /// The image is for another platform.
    #[error("The image is for {os}/{architecture}: the enclave runs linux/amd64 programs; build the image for linux/amd64")]
    WrongPlatform {
        /// Its OS.
        os: String,
        /// Its architecture.
        architecture: String,
    },
    /// A media type this reader does not know.
    #[error("{name} has media type {media_type}, which is not an image manifest, index or layer this reader knows")]
    MediaType {
        /// The blob.
        name: String,
        /// Its media type.
        media_type: String,
    },
    /// Indexes nested too deeply.
    #[error("Image indexes nest more than {max} deep: the image is malformed")]
    TooDeep {
        /// Limit.
        max: usize,
    },
    /// The layer list and the config's diff_ids differ in length.
    #[error("The manifest has {layers} layers but the config lists {diff_ids} diff_ids: the image is damaged, export it again")]
    LayerCount {
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A layer uses a compression this reader lacks.
    #[error("Layer {name} is compressed with {what}, which is not supported: re-export the image with uncompressed or gzip layers (e.g. `skopeo copy --dest-compress-format gzip`)")]
    Compression {
        /// The layer.
        name: String,
        /// What it is.
        what: &'static str,
    },
    /// A layer is not a valid tar stream.
    #[error("Layer {name} is not a valid (compressed) tar stream: the image is damaged, export it again")]
    Layer {
        /// The layer.
        name: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A path in a layer or layout is unusable.
    #[error("Path {path:?} in {name} is not usable: {reason}")]
    BadPath {
        /// Where it was found.
        name: String,
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A hard link points at nothing.
    #[error("Hard link /{path} in {name} points at /{target}, which is not a regular file of the image: the layer is malformed")]
    BadHardLink {
        /// Layer.
        name: String,
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// Symlinks loop while resolving a path.
    #[error("Resolving /{path} follows more than {max} symlinks: the image has a symlink loop")]
    SymlinkLoop {
        /// The path.
        path: String,
        /// Limit.
        max: u32,
    },
    /// The unpacked image is larger than allowed.
    #[error("The unpacked image is over the {max_mib} MiB limit: raise it with --oci-max-size-mib if the image is trusted, or make the image smaller")]
    TooLarge {
        /// Limit in MiB.
        max_mib: u64,
    },
    /// The image has more entries than allowed.
    #[error("The image has over {max} files: make the image smaller")]
    TooManyEntries {
        /// Limit.
        max: usize,
    },
    /// No Entrypoint or Cmd.
    #[error("The image config has neither Entrypoint nor Cmd: give the program with --cmd (e.g. --cmd /usr/bin/app)")]
    NoProgram,
    /// The program is not in the image.
    #[error("The program {program:?} is not in the image (looked in {looked}): check the image's Entrypoint/Cmd and PATH, or give --cmd")]
    ProgramMissing {
        /// argv\[0\].
        program: String,
        /// Where it was looked for.
        looked: String,
    },
    /// The program is not a regular executable file.
    #[error("The program /{path} is not an executable regular file of the image: give the path of a program with --cmd")]
    ProgramNotFile {
        /// Resolved path.
        path: String,
    },
    /// The program cannot run in an enclave.
    #[error("The program /{path} cannot run in an enclave")]
    ProgramElf {
        /// Resolved path.
        path: String,
        /// Cause.
        #[source]
        source: enclave_runtime::elf::ElfError,
    },
    /// A dynamic program whose interpreter is missing.
    #[error("The program /{path} is dynamically linked and needs the interpreter {interpreter}, which the image does not have: add the interpreter and libraries to the image, or build the program static")]
    NoInterpreter {
        /// Resolved path.
        path: String,
        /// PT_INTERP.
        interpreter: String,
    },
    /// The working directory is not a directory of the image.
    #[error("The working directory {cwd} is not a directory of the image: fix WorkingDir in the image config")]
    BadWorkingDir {
        /// WorkingDir.
        cwd: String,
    },
    /// The image has its own /init besides the program.
    #[error("The image has its own /init, which the enclave reserves for its program /{program}: remove /init from the image or make it the entrypoint")]
    InitTaken {
        /// The resolved program.
        program: String,
    },
}
