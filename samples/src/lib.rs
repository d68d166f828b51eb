//! Sample enclave programs and parent applications.
//!
//! - `samples/enclave-apps/` (its own cargo project, built static): the programs that run in
//!   an enclave: `hello-echo` (std threads), `hello-echo-tokio` (tokio multi-thread runtime),
//!   `vsock-threads`, `vsock-isolation` and `vsock-bench`. [`enclave_apps::build`] builds them.
//! - `hello-client` (`samples/hello/client.rs`): the parent side of the hello sample, over the
//!   SDK.
//! - `samples/nsm-app/` (its own cargo project) is an AWS Nitro enclave program using
//!   `aws-nitro-enclaves-nsm-api` unchanged against `/dev/nsm`.
//! - [`kms`]: the KMS-style key service (`kms-server`, `kms`); its enclave program is
//!   `samples/kms/enclave/` (own cargo project, `kms-enclave`).
//! - [`scenario`]: the KMS story (pool, CA, key service, vsock-proxy, `kms-enclave`) as a
//!   library for `kms-demo` (the README's main command), the tests harness and the benchmark.
//! - `vsock-proxy` (`samples/vsock-proxy/main.rs` over [`vsock_proxy`]): forwards an enclave's
//!   CID-3 port to an allowlisted host:port, as AWS's vsock-proxy.
//! - `benches/vsock_bench.rs`: vsock throughput and round trips against a Unix socketpair.

pub mod cli_error;
pub mod enclave_apps;
pub mod kms;
pub mod scenario;
pub mod scratch;
pub mod vsock_proxy;
