//! Fuzzes the WAL record decoder (`tidemark::storage::wal::decode`):
//! arbitrary bytes must never panic, and whatever decodes must re-encode to a
//! payload that decodes to the same record (values compared by bits).
//!
//! `cargo +nightly fuzz run fuzz_wal_record` (nightly, outside CI). Minimized
//! crashes become unit tests in `src/storage/wal/record.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::model::Interner;
use tidemark::storage::wal::{decode, encode_samples, encode_series, encode_tombstones, Record};

/// Comparable form of a record: series as (ref, labels), samples as bits.
#[derive(Debug, PartialEq, Eq)]
enum Canon {
    Series(Vec<(u64, Vec<(String, String)>)>),
    Samples(Vec<(u64, i64, u64)>),
    Tombstones(Vec<(u64, i64, i64)>),
}

fn canon(r: &Record) -> Canon {
    match r {
        Record::Series(s) => Canon::Series(
            s.iter()
                .map(|s| {
                    let labels = s
                        .labels
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect();
                    (s.series_ref.0, labels)
                })
                .collect(),
        ),
        Record::Samples(s) => Canon::Samples(
            s.iter()
                .map(|s| (s.series_ref.0, s.t, s.v.to_bits()))
                .collect(),
        ),
        Record::Tombstones(t) => {
            Canon::Tombstones(t.iter().map(|t| (t.series_ref.0, t.mint, t.maxt)).collect())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let interner = Interner::new();
    let Ok(record) = decode(data, &interner) else {
        return;
    };
    let mut buf = Vec::new();
    match &record {
        Record::Series(s) => encode_series(s, &mut buf),
        Record::Samples(s) => encode_samples(s, &mut buf),
        Record::Tombstones(t) => encode_tombstones(t, &mut buf),
    }
    let again = decode(&buf, &interner).expect("a re-encoded record decodes");
    assert_eq!(canon(&again), canon(&record));
});
