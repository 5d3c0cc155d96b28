//! Test-only: where a WAL's bytes go. Reads every segment of the WAL
//! directory named by `TIDEMARK_WAL_CENSUS` (a copy of a server's
//! `<data>/wal/` taken during ingest) and prints the bytes of each record
//! type, framing, and the bits of chained samples records by field (ref,
//! time, value by form, headers and padding), per metric name too, beside
//! what packed block chunks would take for the same series. Run with
//! `TIDEMARK_WAL_CENSUS=/path/to/wal cargo test --lib census -- --ignored --nocapture`.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::model::{Interner, Sample};
use crate::storage::chunk::encode_packed;
use crate::storage::wal::segment::{list_segments, Frame, SegmentReader};
use crate::storage::wal::{decode, Record, FRAME_HEADER_LEN, RECORD_SNAPPY, SEGMENT_HEADER_LEN};

#[derive(Default)]
struct Fields {
    samples: u64,
    ref_bits: u64,
    ref_kinds: [u64; 5],
    time_bits: u64,
    time_kinds: [u64; 2],
    value_bits: u64,
    /// same, window fits, window new width, new scale, xor, stale
    value_kinds: [u64; 6],
    value_kind_bits: [u64; 6],
}

#[test]
#[ignore = "needs TIDEMARK_WAL_CENSUS=<wal dir>"]
fn census() {
    let Ok(dir) = std::env::var("TIDEMARK_WAL_CENSUS") else {
        return;
    };
    let interner = Interner::default();
    let mut by_type: BTreeMap<u8, (u64, u64, u64)> = BTreeMap::new(); // records, stored, plain
    let mut framing = SEGMENT_HEADER_LEN;
    let mut headers = 0u64;
    let mut padding = 0u64;
    let mut total = Fields::default();
    let mut per_name: HashMap<String, Fields> = HashMap::new();
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut history: HashMap<u64, Vec<Sample>> = HashMap::new();
    let mut series_n = 0u64;
    let mut label_bytes = 0u64;
    let mut reencoded = 0u64;
    let mut runs = 0u64;
    let mut gapped_runs = 0u64;
    for (_, path) in list_segments(std::path::Path::new(&dir)).unwrap() {
        let mut r = SegmentReader::open(&path).unwrap();
        assert!(r.read_header().unwrap().is_none());
        framing += SEGMENT_HEADER_LEN;
        let mut chain = SampleChain::new();
        let mut rechain = SampleChain::new();
        while let Frame::Record { payload, .. } = r.next_frame().unwrap() {
            let payload = payload.to_vec();
            framing += FRAME_HEADER_LEN;
            let plain = if payload[0] == RECORD_SNAPPY {
                snap::raw::Decoder::new()
                    .decompress_vec(&payload[1..])
                    .unwrap()
            } else {
                payload.clone()
            };
            let e = by_type.entry(plain[0]).or_default();
            e.0 += 1;
            e.1 += payload.len() as u64;
            e.2 += plain.len() as u64;
            if plain[0] == RECORD_CHAINED_SAMPLES || plain[0] == RECORD_RUN_SAMPLES {
                let body = &plain[1..];
                let (h, pad) = if plain[0] == RECORD_CHAINED_SAMPLES {
                    tally(body, &chain, &names, &mut total, &mut per_name)
                } else {
                    tally_runs(body, &chain, &mut total, &mut runs, &mut gapped_runs)
                };
                headers += h + 1;
                padding += pad;
                let Ok(Record::Samples(s)) = decode_chained_for_census(&plain, &mut chain) else {
                    panic!("undecodable");
                };
                let mut again = Vec::new();
                rechain.encode(&s, &mut again);
                reencoded += again.len() as u64 + FRAME_HEADER_LEN;
                for s in s {
                    history
                        .entry(s.series_ref.0)
                        .or_default()
                        .push(Sample { t: s.t, v: s.v });
                }
                continue;
            }
            if let Ok(Record::Series(series)) = decode(&plain, &interner) {
                for s in series {
                    series_n += 1;
                    for l in s.labels.iter() {
                        label_bytes += (l.name.len() + l.value.len()) as u64;
                    }
                    let name = s.labels.get("__name__").unwrap_or("").to_string();
                    names.insert(s.series_ref.0, name);
                }
            }
        }
    }
    println!("record type: records, stored bytes, uncompressed bytes");
    for (t, (n, stored, plain)) in &by_type {
        println!("  type {t:>2}: {n:>8} {stored:>12} {plain:>12}");
    }
    println!("framing (segment + frame headers): {framing}");
    println!("samples records re-encoded as run-chained (type 14), framed: {reencoded}");
    println!("series: {series_n}, raw label bytes {label_bytes}");
    let s = total.samples as f64;
    println!(
        "samples {}: chained headers {headers} B, padding {} B",
        total.samples,
        padding / 8
    );
    STEPS.with(|h| println!("gapped steps by bit length: {:?}", &h.borrow()[..20]));
    STRETCHES.with(|h| println!("gapped stretches by bit length: {:?}", &h.borrow()[..20]));
    println!("runs (type 14): {runs}, {gapped_runs} gapped; ref/time bits are the run headers' and gaps'");
    println!(
        "  ref {:.3} B/s kinds {:?}\n  time {:.3} B/s kinds {:?}\n  value {:.3} B/s",
        total.ref_bits as f64 / 8.0 / s,
        total.ref_kinds,
        total.time_bits as f64 / 8.0 / s,
        total.time_kinds,
        total.value_bits as f64 / 8.0 / s,
    );
    let kinds = ["same", "window", "new width", "new scale", "xor", "stale"];
    for (i, k) in kinds.iter().enumerate() {
        println!(
            "    {k:>10}: {:>10} samples {:>10.0} bytes {:.2} bits each",
            total.value_kinds[i],
            total.value_kind_bits[i] as f64 / 8.0,
            total.value_kind_bits[i] as f64 / total.value_kinds[i].max(1) as f64
        );
    }
    // Packed chunks of each series' samples, by metric name.
    let mut packed_by_name: HashMap<&str, u64> = HashMap::new();
    let mut packed_total = 0u64;
    for (r, samples) in &history {
        let b = encode_packed(samples).len() as u64;
        packed_total += b;
        *packed_by_name
            .entry(names.get(r).map_or("", String::as_str))
            .or_default() += b;
    }
    println!(
        "packed chunks of the same series: {packed_total} B, {:.3} B/sample",
        packed_total as f64 / s
    );
    let mut rows: Vec<_> = per_name.iter().collect();
    rows.sort_by_key(|(_, f)| std::cmp::Reverse(f.value_bits));
    println!("by name (top 25 by value bits): samples, value B/s, ref B/s, time B/s, packed B/s");
    for (name, f) in rows.iter().take(25) {
        let n = f.samples as f64;
        println!(
            "  {name:<45} {:>8} {:.3} {:.3} {:.3} {:.3} kinds {:?}",
            f.samples,
            f.value_bits as f64 / 8.0 / n,
            f.ref_bits as f64 / 8.0 / n,
            f.time_bits as f64 / 8.0 / n,
            *packed_by_name.get(name.as_str()).unwrap_or(&0) as f64 / n,
            f.value_kinds,
        );
    }
}

fn decode_chained_for_census(plain: &[u8], chain: &mut SampleChain) -> Result<Record, RecordError> {
    if plain[0] == RECORD_RUN_SAMPLES {
        return chain.decode_runs(&plain[1..]).map(Record::Samples);
    }
    chain.decode(&plain[1..]).map(Record::Samples)
}

/// Tallies one chained record's bits by field against a copy of `chain`
/// (the caller advances the real one); returns header bytes and padding
/// bits.
fn tally(
    body: &[u8],
    chain: &SampleChain,
    names: &HashMap<u64, String>,
    total: &mut Fields,
    per_name: &mut HashMap<String, Fields>,
) -> (u64, u64) {
    let mut chain = SampleChain {
        links: chain.links.clone(),
    };
    let mut d = Decbuf::new(body);
    let n = d.uvarint().unwrap();
    if n == 0 {
        return (d.position() as u64, 0);
    }
    let ref0 = d.uvarint().unwrap();
    let t0 = d.varint().unwrap();
    let start = d.position();
    let mut r = BitReader::at_byte(start);
    let (mut prev_ref, mut prev_t) = (ref0, t0);
    for _ in 0..n {
        let a = r.bit_offset();
        let dref = if r.read_bit(body).unwrap() {
            let i = r.clone().read_unary(body, 3).unwrap();
            total.ref_kinds[1 + i as usize] += 1;
            unzigzag(read_bucketed(&mut r, body, &REF_BUCKETS).unwrap())
        } else {
            total.ref_kinds[0] += 1;
            1
        };
        let b = r.bit_offset();
        let series_ref = prev_ref.wrapping_add(dref as u64);
        prev_ref = series_ref;
        let link = chain
            .links
            .entry(series_ref)
            .or_insert_with(|| Link::start(t0, 0));
        let t = if r.read_bit(body).unwrap() {
            total.time_kinds[1] += 1;
            let dod = read_dod(&mut r, body).unwrap();
            link.t.wrapping_add(i64::from(link.dt)).wrapping_add(dod)
        } else {
            total.time_kinds[0] += 1;
            prev_t
        };
        prev_t = t;
        let c = r.bit_offset();
        let mut peek = r.clone();
        let kind = match peek.read_unary(body, 4).unwrap() {
            1 => 1 + usize::from(peek.read_bit(body).unwrap()),
            0 => 0,
            k => k as usize + 1,
        };
        decode_value(&mut r, body, link).unwrap();
        link.dt = t.wrapping_sub(link.t) as i32;
        link.t = t;
        let e = r.bit_offset();
        let name = names.get(&series_ref).cloned().unwrap_or_default();
        let add = |f: &mut Fields| {
            f.samples += 1;
            f.ref_bits += (b - a) as u64;
            f.time_bits += (c - b) as u64;
            f.value_bits += (e - c) as u64;
            f.value_kinds[kind] += 1;
            f.value_kind_bits[kind] += (e - c) as u64;
        };
        add(total);
        add(per_name.entry(name).or_default());
    }
    (start as u64, (body.len() * 8 - r.bit_offset()) as u64)
}

// Gapped runs' ref steps and dense stretches, by bit length.
thread_local! {
    static STEPS: std::cell::RefCell<[u64; 65]> = const { std::cell::RefCell::new([0; 65]) };
    static STRETCHES: std::cell::RefCell<[u64; 65]> = const { std::cell::RefCell::new([0; 65]) };
}

/// [`tally`] of a run-chained record: run headers count as ref (ref and
/// length) and time bits; values by form (`same`, `window`, `new width`,
/// `new scale`, `xor`, `stale`).
fn tally_runs(
    body: &[u8],
    chain: &SampleChain,
    total: &mut Fields,
    runs: &mut u64,
    gapped_runs: &mut u64,
) -> (u64, u64) {
    let mut chain = SampleChain {
        links: chain.links.clone(),
    };
    let mut d = Decbuf::new(body);
    let n = d.uvarint().unwrap() as usize;
    if n == 0 {
        return (d.position() as u64, 0);
    }
    let ref0 = d.uvarint().unwrap();
    let t0 = d.varint().unwrap();
    let start = d.position();
    let mut r = BitReader::at_byte(start);
    let (mut prev_ref, mut t) = (ref0.wrapping_sub(1), t0);
    let mut done = 0;
    while done < n {
        *runs += 1;
        let a = r.bit_offset();
        let dref = if r.read_bit(body).unwrap() {
            total.ref_kinds[1] += 1;
            unzigzag(read_bucketed(&mut r, body, &REF_BUCKETS).unwrap())
        } else {
            total.ref_kinds[0] += 1;
            0
        };
        let run_ref = prev_ref.wrapping_add(1).wrapping_add(dref as u64);
        let b = r.bit_offset();
        if r.read_bit(body).unwrap() {
            total.time_kinds[1] += 1;
            let dod = read_dod(&mut r, body).unwrap();
            let link = chain
                .links
                .entry(run_ref)
                .or_insert_with(|| Link::start(t0, 0));
            t = link.t.wrapping_add(i64::from(link.dt)).wrapping_add(dod);
        } else {
            total.time_kinds[0] += 1;
        }
        let c = r.bit_offset();
        let len = read_bucketed(&mut r, body, &runs::RUN_BUCKETS).unwrap() + 1;
        let gapped = r.read_bit(body).unwrap();
        *gapped_runs += u64::from(gapped);
        total.ref_bits += (b - a + r.bit_offset() - c) as u64;
        total.time_bits += (c - b) as u64;
        let mut series_ref = run_ref;
        let mut stretch = 1u64;
        let mut step = 1u64;
        for i in 0..len {
            if i > 0 {
                let g = r.bit_offset();
                if gapped && r.read_bit(body).unwrap() {
                    step = read_bucketed(&mut r, body, &runs::GAP_BUCKETS).unwrap() + 1;
                }
                series_ref = series_ref.wrapping_add(step);
                total.ref_bits += (r.bit_offset() - g) as u64;
                if gapped {
                    if step == 1 {
                        stretch += 1;
                    } else {
                        STEPS.with(|h| h.borrow_mut()[(64 - step.leading_zeros()) as usize] += 1);
                        STRETCHES
                            .with(|h| h.borrow_mut()[(64 - stretch.leading_zeros()) as usize] += 1);
                        stretch = 1;
                    }
                }
            }
            let link = chain
                .links
                .entry(series_ref)
                .or_insert_with(|| Link::start(t0, 0));
            let at = r.bit_offset();
            let mut peek = r.clone();
            let kind = match peek.read_unary(body, 5).unwrap() {
                0 => 0,
                k => k as usize,
            };
            runs::decode_value(&mut r, body, link).unwrap();
            link.dt = t.wrapping_sub(link.t) as i32;
            link.t = t;
            let bits = (r.bit_offset() - at) as u64;
            total.samples += 1;
            total.value_bits += bits;
            total.value_kinds[kind] += 1;
            total.value_kind_bits[kind] += bits;
        }
        done += len as usize;
        prev_ref = series_ref;
    }
    (start as u64, (body.len() * 8 - r.bit_offset()) as u64)
}
