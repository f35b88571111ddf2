//! wasmpool
