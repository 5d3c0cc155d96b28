//! Segmented write-ahead log (placeholder until the WAL lands).
