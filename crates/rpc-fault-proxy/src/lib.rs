//! Fault-injecting JSON-RPC HTTP proxy (work in progress).
