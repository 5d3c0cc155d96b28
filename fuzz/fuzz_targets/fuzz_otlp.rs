//! Fuzzes the OTLP/HTTP decoders and the translator
//! (`tidemark::ingest::otlp`): arbitrary bytes as protobuf, JSON and gzip
//! bodies must never panic, and whatever decodes must translate without
//! panicking.
//!
//! `cargo +nightly fuzz run fuzz_otlp` (nightly, outside CI).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::ingest::limits::WriteLimits;
use tidemark::ingest::otlp::{decode, translate::translate, OtlpEncoding};

fuzz_target!(|data: &[u8]| {
    for (encoding, gzip) in [
        (OtlpEncoding::Protobuf, None),
        (OtlpEncoding::Json, None),
        (OtlpEncoding::Protobuf, Some("gzip")),
    ] {
        if let Ok(req) = decode(encoding, gzip, data, 1 << 20, &WriteLimits::DEFAULT) {
            let _ = translate(&req);
        }
    }
});
