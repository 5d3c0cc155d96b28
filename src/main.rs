//! The `tidemark` server binary.

fn main() {}
