//! Parent-side SDK (launch/describe/terminate; vsock channels come with issue 4).
