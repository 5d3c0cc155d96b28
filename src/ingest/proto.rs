//! The remote write and remote read wire types, from the `tidemark-proto`
//! crate (prost output; nothing hand-written), under the names the rest of
//! the server uses.

pub use tidemark_proto::{prometheus, write_v2};
