//! The server's loopback test helpers (its `tests/common/http.rs` and
//! `proc.rs`), shared by path so there is one copy: the HTTP client and the
//! `tidemark` process wrapper.
#![allow(dead_code)]

#[path = "../../../../tests/common/http.rs"]
pub(crate) mod http;
#[path = "../../../../tests/common/proc.rs"]
pub(crate) mod proc;
