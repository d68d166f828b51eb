//! Sample enclave programs (issue 4 onwards).
