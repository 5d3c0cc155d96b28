//! Fuzzes the remote-write decode path below HTTP: the first byte picks the
//! protocol version (even: 1.0, odd: 2.0), the rest is the request body as
//! sent (a snappy block). `decode::decompress`, `decode::decode` and
//! `validate::prepare_v1/v2` must never panic; errors are fine. The first
//! byte's bit 1 also feeds the undecompressed rest straight to the protobuf
//! decoder, so the fuzzer reaches prost without having to learn snappy.
//!
//! `cargo +nightly fuzz run fuzz_remote_write` (nightly, outside CI).
//! Minimized crashes become unit tests in `src/ingest/decode.rs` or
//! `src/ingest/validate.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::ingest::decode::{decode, decompress, ProtoVersion, Request};
use tidemark::ingest::validate::{prepare_v1, prepare_v2, Rules};

/// Far above what a fuzz input can declare usefully, small enough that a
/// forged length header cannot make the fuzzer run out of memory.
const MAX_DECOMPRESSED: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let version = if selector & 1 == 0 {
        ProtoVersion::V1
    } else {
        ProtoVersion::V2
    };
    let raw = if selector & 2 == 0 {
        match decompress(body, MAX_DECOMPRESSED) {
            Ok(raw) => raw,
            Err(_) => return,
        }
    } else {
        body.to_vec()
    };
    let Ok(request) = decode(version, raw.into()) else {
        return;
    };
    // A fixed "now" keeps runs reproducible; the future limit is exercised.
    let rules = Rules::new(1_700_000_600_000);
    let prepared = match &request {
        Request::V1(r) => prepare_v1(r, rules),
        Request::V2(r) => prepare_v2(r, rules),
    };
    // Every received sample is either in the batch or counted as rejected.
    let kept: usize = prepared.batch.iter().map(|s| s.samples.len()).sum();
    let rejected: usize = prepared
        .rejected
        .iter()
        .filter(|(r, _)| r.counts_samples())
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        kept + rejected,
        prepared.samples_received + prepared.histograms_received
    );
});
