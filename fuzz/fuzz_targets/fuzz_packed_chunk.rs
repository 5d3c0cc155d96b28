//! Fuzzes the packed chunk decoder (block chunks, encoding 0x50): arbitrary
//! bytes must never panic, and a chunk that decodes must re-encode to one
//! that decodes to exactly the same samples (bit-exact values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::storage::chunk::{decode_packed, encode_packed, num_samples};

fuzz_target!(|data: &[u8]| {
    let Ok(got) = decode_packed(data) else {
        return;
    };
    assert_eq!(Ok(got.len()), num_samples(data).map(usize::from));
    let again = decode_packed(&encode_packed(&got)).expect("re-encoded chunk decodes");
    let bits = |s: &[tidemark::model::Sample]| -> Vec<(i64, u64)> {
        s.iter().map(|s| (s.t, s.v.to_bits())).collect()
    };
    assert_eq!(bits(&again), bits(&got));
});
