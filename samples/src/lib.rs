//! Sample enclave programs and parent applications.
//!
//! - `samples/enclave-apps/` (its own cargo project, built static): the programs that run in
//!   an enclave: `hello-echo` (std threads), `hello-echo-tokio` (tokio multi-thread runtime),
//!   `vsock-threads`, `vsock-isolation` and `vsock-bench`. [`enclave_apps::build`] builds them.
//! - `hello-client` (`samples/hello/client.rs`): the parent side of the hello sample, over the
//!   SDK.
//! - `samples/nsm-app/` (its own cargo project) is an AWS Nitro enclave program using
//!   `aws-nitro-enclaves-nsm-api` unchanged against `/dev/nsm`.
//! - `vsock-proxy` (`samples/vsock-proxy/main.rs` over [`vsock_proxy`]): forwards an enclave's
//!   vsock port to an allowlisted TCP `host:port`, like AWS's `vsock-proxy`.
//! - `benches/vsock_bench.rs`: vsock throughput and round trips against a Unix socketpair.

pub mod enclave_apps;
pub mod scratch;
pub mod vsock_proxy;
