use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::model::{Labels, MatchOp, Matcher, STALE_NAN_BITS};
use crate::storage::chunk::{Encoding, XorAppender, XorIter};
use crate::storage::tombstones::Interval;

mod streams;

/// One series as generated: labels and chunks of (t, value bits).
type Data = BTreeMap<Labels, Vec<Vec<(i64, u64)>>>;
/// Series with their chunks' samples, as a query returns them.
type Selected = Vec<(Labels, Vec<Vec<(i64, u64)>>)>;

fn encode(samples: &[(i64, u64)]) -> Vec<u8> {
    let mut a = XorAppender::new();
    for &(t, v) in samples {
        a.append(t, f64::from_bits(v));
    }
    a.bytes().to_vec()
}

fn decode(bytes: &[u8]) -> Vec<(i64, u64)> {
    let mut it = XorIter::new(bytes);
    let out: Vec<(i64, u64)> = it.by_ref().map(|s| (s.t, s.v.to_bits())).collect();
    assert_eq!(it.err(), None);
    out
}

fn write_block_with(dir: &Path, data: &Data, segment_size: u64) -> BlockMeta {
    let mut w = BlockWriter::create_with_segment_size(dir, segment_size).unwrap();
    for (labels, chunks) in data {
        let enc: Vec<Vec<u8>> = chunks.iter().map(|c| encode(c)).collect();
        let list: Vec<(i64, i64, &[u8])> = chunks
            .iter()
            .zip(&enc)
            .map(|(c, e)| (c[0].0, c[c.len() - 1].0, e.as_slice()))
            .collect();
        w.add_series(labels, &list).unwrap();
    }
    let (mint, maxt) = w.time_range().unwrap_or((0, 0));
    w.finish(BlockMeta::new(mint, maxt + 1)).unwrap()
}

fn write_block(dir: &Path, data: &Data) -> BlockMeta {
    write_block_with(dir, data, SEGMENT_MAX_SIZE)
}

fn read_all(s: &BlockSeries) -> Vec<Vec<(i64, u64)>> {
    s.chunks
        .iter()
        .map(|c| {
            let (encoding, bytes) = c.data().unwrap();
            assert_eq!(encoding, Encoding::Xor);
            decode(bytes)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_static(pairs)
}

/// A small fixed data set: 3 metrics over a few jobs/instances.
fn fixture() -> Data {
    let mut data = Data::new();
    for (i, (name, job, env)) in [
        ("up", "a", ""),
        ("up", "b", "prod"),
        ("x", "a", "dev"),
        ("x", "c", ""),
        ("y", "b", "prod"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut pairs = vec![("__name__", name), ("job", job)];
        if !env.is_empty() {
            pairs.push(("env", env));
        }
        let base = i as i64 * 10;
        let chunks = vec![
            (0..5)
                .map(|k| (base + k * 1000, (k as f64).to_bits()))
                .collect(),
            (5..9).map(|k| (base + k * 1000, STALE_NAN_BITS)).collect(),
        ];
        data.insert(Labels::try_from_pairs(pairs).unwrap(), chunks);
    }
    data
}

fn matcher_strategy() -> impl Strategy<Value = Matcher> {
    let names = prop_oneof![Just("__name__"), Just("job"), Just("env"), Just("nope")];
    let values = prop_oneof![
        Just(""),
        Just("a"),
        Just("b"),
        Just("up"),
        Just("prod"),
        Just("a|b"),
        Just(".*"),
        Just(".+"),
        Just("p.*|"),
        Just("x.*"),
        // Literal prefixes: the index scans only the values with it.
        Just("p.*"),
        Just("pro.+"),
        Just("u[op]"),
        Just("a.*|ab"),
        Just("upp?"),
    ];
    let ops = prop_oneof![
        Just(MatchOp::Equal),
        Just(MatchOp::NotEqual),
        Just(MatchOp::Regex),
        Just(MatchOp::NotRegex),
    ];
    (ops, names, values).prop_map(|(op, n, v)| Matcher::new(op, n, v).unwrap())
}

fn data_strategy() -> impl Strategy<Value = Data> {
    let label_set =
        (0usize..4, 0usize..5, 0usize..3, any::<bool>()).prop_map(|(m, j, e, extra)| {
            let mut pairs = vec![
                (
                    "__name__".to_string(),
                    ["up", "x", "y", "zz"][m].to_string(),
                ),
                ("job".to_string(), ["a", "b", "c", "d", "ä"][j].to_string()),
            ];
            if e > 0 {
                pairs.push(("env".into(), ["", "prod", "dev"][e].into()));
            }
            if extra {
                pairs.push(("instance".into(), format!("host-{m}{j}")));
            }
            Labels::try_from_pairs(pairs).unwrap()
        });
    let value = prop_oneof![
        any::<f64>().prop_map(f64::to_bits),
        Just(STALE_NAN_BITS),
        Just(f64::NAN.to_bits()),
        (0u32..100).prop_map(|v| f64::from(v).to_bits()),
    ];
    // 1..4 chunks of 1..30 samples, strictly increasing timestamps.
    let chunks = proptest::collection::vec(
        proptest::collection::vec((1i64..20_000, value), 1..30),
        1..4,
    )
    .prop_map(|chunks| {
        let mut t = -50_000i64;
        chunks
            .into_iter()
            .map(|c| {
                t += 7;
                c.into_iter()
                    .map(|(dt, v)| {
                        t += dt;
                        (t, v)
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    });
    proptest::collection::btree_map(label_set, chunks, 0..25)
}

fn brute_select(data: &Data, ms: &[Matcher], mint: i64, maxt: i64) -> Selected {
    data.iter()
        .filter(|(l, _)| ms.iter().all(|m| m.matches(l.get(m.name()).unwrap_or(""))))
        .map(|(l, cs)| {
            let kept: Vec<_> = cs
                .iter()
                .filter(|c| c[0].0 <= maxt && mint <= c[c.len() - 1].0)
                .cloned()
                .collect();
            (l.clone(), kept)
        })
        .filter(|(_, cs)| !cs.is_empty())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_block_round_trips_and_selects_like_brute_force(
        data in data_strategy(),
        queries in proptest::collection::vec((proptest::collection::vec(matcher_strategy(), 0..3), -60_000i64..400_000, 0i64..300_000), 1..8),
        small_segments in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        let seg = if small_segments { 256 } else { SEGMENT_MAX_SIZE };
        let meta = write_block_with(&dir, &data, seg);
        prop_assert_eq!(meta.stats.num_series, data.len() as u64);
        prop_assert_eq!(meta.stats.num_chunks, data.values().map(|c| c.len() as u64).sum::<u64>());
        prop_assert_eq!(meta.stats.num_samples, data.values().flatten().map(|c| c.len() as u64).sum::<u64>());
        let block = Block::open(&dir, true).unwrap();
        prop_assert_eq!(block.meta(), &meta);

        // series(): everything, bit-exact, in label order, ids 0..n.
        let all: Vec<BlockSeries> = block.series().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(all.len(), data.len());
        for (i, (s, (l, cs))) in all.iter().zip(&data).enumerate() {
            prop_assert_eq!(s.id, BlockSeriesId(i as u64));
            prop_assert_eq!(&s.labels, l);
            prop_assert_eq!(&read_all(s), cs);
            for (c, want) in s.chunks.iter().zip(cs) {
                prop_assert_eq!((c.mint, c.maxt), (want[0].0, want[want.len() - 1].0));
            }
        }

        for (ms, mint, len) in &queries {
            let maxt = mint + len;
            let got: Selected = block
                .select(ms, *mint, maxt)
                .unwrap()
                .iter()
                .map(|s| (s.labels.clone(), read_all(s)))
                .collect();
            prop_assert_eq!(&got, &brute_select(&data, ms, *mint, maxt), "{:?} [{}, {}]", ms, mint, maxt);
            // The labels-only selection: the same series, in order.
            let labels: Vec<Labels> = got.iter().map(|(l, _)| l.clone()).collect();
            prop_assert_eq!(block.select_labels(ms, *mint, maxt).unwrap(), labels);

            let matching: Vec<&Labels> = data.keys()
                .filter(|l| ms.iter().all(|m| m.matches(l.get(m.name()).unwrap_or(""))))
                .collect();
            let mut names: Vec<String> = matching.iter().flat_map(|l| l.iter().map(|x| x.name.to_string())).collect();
            names.sort();
            names.dedup();
            prop_assert_eq!(block.label_names(ms).unwrap(), names);
            for name in ["job", "env", "nope"] {
                let mut values: Vec<String> = matching.iter().filter_map(|l| l.get(name).map(str::to_string)).collect();
                values.sort();
                values.dedup();
                prop_assert_eq!(block.label_values(name, ms).unwrap(), values);
            }
        }
    }
}

#[test]
fn select_follows_prometheus_empty_matcher_semantics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block(&dir, &fixture());
    let block = Block::open(&dir, false).unwrap();
    let re = |n: &str, v: &str| Matcher::new(MatchOp::Regex, n, v).unwrap();
    let nre = |n: &str, v: &str| Matcher::new(MatchOp::NotRegex, n, v).unwrap();
    let names = |ms: &[Matcher]| -> Vec<String> {
        block
            .select(ms, i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|s| s.labels.to_string())
            .collect()
    };
    let cases: Vec<(Vec<Matcher>, usize)> = vec![
        (vec![Matcher::eq("__name__", "up")], 2),
        (vec![Matcher::eq("env", "")], 2),
        (vec![Matcher::neq("env", "")], 3),
        (vec![re("env", "prod|")], 4),
        (vec![nre("job", "a|b")], 1),
        (vec![Matcher::eq("nope", "")], 5),
        (vec![Matcher::eq("nope", "x")], 0),
        (vec![], 5),
    ];
    for (ms, want) in cases {
        assert_eq!(names(&ms).len(), want, "{ms:?}: {:?}", names(&ms));
    }
}

#[test]
fn select_returns_only_chunks_overlapping_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block(&dir, &fixture());
    let block = Block::open(&dir, false).unwrap();
    // Chunks of series i: [10i, 10i + 4000] and [10i + 5000, 10i + 8000].
    let ms = [Matcher::eq("__name__", "up")];
    let got = block.select(&ms, 4_500, 4_999).unwrap();
    assert!(got.is_empty(), "{got:?}");
    let got = block.select(&ms, 3_999, 5_000).unwrap();
    assert_eq!(got.len(), 2);
    // Label order: {__name__="up", env="prod", job="b"} (i = 1) first.
    assert_eq!(got[0].labels.get("job"), Some("b"));
    let ranges = |s: &BlockSeries| -> Vec<(i64, i64)> {
        s.chunks.iter().map(|c| (c.mint, c.maxt)).collect()
    };
    assert_eq!(ranges(&got[0]), [(10, 4010)]);
    assert_eq!(ranges(&got[1]), [(0, 4000), (5000, 8000)]);
    assert!(block.select(&ms, 9_000, 10_000).unwrap().is_empty());
}

#[test]
fn writer_refuses_out_of_order_series_and_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::create(&tmp.path().join("b")).unwrap();
    let c = encode(&[(1, 0), (2, 0)]);
    let b = labels(&[("__name__", "b")]);
    w.add_series(&b, &[(1, 2, &c)]).unwrap();
    for l in [labels(&[("__name__", "a")]), b.clone()] {
        assert!(matches!(
            w.add_series(&l, &[(1, 2, &c)]),
            Err(BlockError::OutOfOrderSeries { .. })
        ));
    }
    // A series with no chunks is skipped, and does not count as "last".
    w.add_series(&labels(&[("__name__", "z")]), &[]).unwrap();
    let c2 = labels(&[("__name__", "c")]);
    assert!(matches!(
        w.add_series(&c2, &[(1, 2, &c), (2, 3, &c)]),
        Err(BlockError::ChunksOutOfOrder { index: 1, .. })
    ));
    assert!(matches!(
        w.add_series(&c2, &[(3, 2, &c)]),
        Err(BlockError::ChunksOutOfOrder { index: 0, .. })
    ));
    assert!(matches!(
        w.add_series(&c2, &[(1, 2, &[0u8][..])]),
        Err(BlockError::InvalidChunk { .. })
    ));
    assert!(matches!(
        BlockWriter::create(&tmp.path().join("b")),
        Err(BlockError::DirExists { .. })
    ));
}

#[test]
fn empty_block_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let meta = write_block(&dir, &Data::new());
    assert_eq!(meta.stats.num_series, 0);
    let block = Block::open(&dir, true).unwrap();
    assert_eq!(block.series().count(), 0);
    assert!(block.select(&[], i64::MIN, i64::MAX).unwrap().is_empty());
    assert!(block.label_names(&[]).unwrap().is_empty());
    assert_eq!(block.chunk_bytes(), 0);
    assert!(block.size_bytes() > block.index_bytes());
}

#[test]
fn block_files_are_complete_after_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block_with(&dir, &fixture(), 64);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["chunks", "index", "meta.json", "tombstones"]);
    let segs = fs::read_dir(dir.join(CHUNKS_DIR)).unwrap().count();
    assert!(segs > 1, "64-byte segments must cut: {segs}");
    let block = Block::open(&dir, true).unwrap();
    assert_eq!(
        block.size_bytes(),
        dir_size(&dir),
        "size_bytes counts every file"
    );
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dir_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn delete_adds_tombstones_persisted_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let meta = write_block(&dir, &fixture());
    let block = Block::open(&dir, false).unwrap();
    assert!(block.tombstones().is_empty());
    let up = [Matcher::eq("__name__", "up")];
    // Outside the block: nothing.
    assert_eq!(
        block
            .delete(&up, meta.max_time, meta.max_time + 10)
            .unwrap(),
        0
    );
    assert_eq!(block.delete(&up, 1_000, 2_000).unwrap(), 2);
    assert_eq!(block.delete(&up, 1_500, 3_000).unwrap(), 2);
    // Series "y" has chunks [40, 4040] and [5040, 8040]: 4500 is in neither.
    assert_eq!(
        block
            .delete(&[Matcher::eq("__name__", "y")], 4_500, 4_600)
            .unwrap(),
        0
    );
    let want = block.tombstones();
    assert_eq!(want.len(), 2);
    let ids: Vec<BlockSeriesId> = block
        .select(&up, i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    for id in ids {
        let ivs = want.get(id).unwrap();
        assert_eq!(
            ivs.iter().copied().collect::<Vec<_>>(),
            [Interval::new(1_000, 3_000)]
        );
    }
    drop(block);
    let block = Block::open(&dir, true).unwrap();
    assert_eq!(block.tombstones(), want);
    assert!(!dir.join("tombstones.tmp").exists());
    // Clipped to the block's range.
    let all = [Matcher::neq("__name__", "")];
    assert_eq!(block.delete(&all, i64::MIN, i64::MAX).unwrap(), 5);
    let ts = block.tombstones();
    assert!(ts.iter().all(|(_, ivs)| ivs
        .iter()
        .eq([&Interval::new(meta.min_time, meta.max_time - 1)])));
}

/// Byte positions to flip: all of a small file, else a bounded sample
/// including the first and last 256 bytes.
fn positions(len: usize) -> Vec<usize> {
    if len <= 4096 {
        return (0..len).collect();
    }
    let mut v: Vec<usize> = (0..256).chain(len - 256..len).collect();
    v.extend((256..len - 256).step_by(len / 2048));
    v
}

fn corrupt_each_byte(file: &Path, dir: &Path) {
    let good = fs::read(file).unwrap();
    let mut undetected = 0;
    for i in positions(good.len()) {
        let mut bad = good.clone();
        bad[i] ^= 0x41;
        fs::write(file, &bad).unwrap();
        match Block::open(dir, true) {
            Err(BlockError::Corrupt { .. } | BlockError::UnsupportedVersion { .. }) => {}
            Err(e) => panic!("flip at {i} of {}: unexpected error {e}", file.display()),
            Ok(b) => {
                // Undetectable only if nothing read back differs.
                undetected += 1;
                for s in b.series() {
                    let s = s.unwrap();
                    for c in &s.chunks {
                        c.samples().unwrap();
                    }
                }
            }
        }
    }
    for n in [0, 1, 4, good.len() / 2, good.len().saturating_sub(1)] {
        fs::write(file, &good[..n]).unwrap();
        assert!(
            matches!(Block::open(dir, true), Err(BlockError::Corrupt { .. })),
            "{} truncated to {n} bytes opened",
            file.display()
        );
    }
    fs::write(file, &good).unwrap();
    Block::open(dir, true).unwrap();
    // Every byte of the index and of the segments is covered by a check.
    assert_eq!(undetected, 0, "{}", file.display());
}

#[test]
fn open_detects_every_flipped_or_truncated_byte_of_index_and_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block_with(&dir, &fixture(), 200);
    corrupt_each_byte(&dir.join(INDEX_FILE), &dir);
    for seg in ["000001", "000002"] {
        corrupt_each_byte(&dir.join(CHUNKS_DIR).join(seg), &dir);
    }
}

#[test]
fn open_without_chunk_verification_still_checks_bounds_and_bytes_checks_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block(&dir, &fixture());
    let seg = dir.join(CHUNKS_DIR).join("000001");
    let good = fs::read(&seg).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 6;
    bad[last] ^= 1;
    fs::write(&seg, &bad).unwrap();
    let block = Block::open(&dir, false).unwrap();
    let series: Vec<BlockSeries> = block.series().collect::<Result<_, _>>().unwrap();
    let last_chunk = series.last().unwrap().chunks.last().unwrap();
    assert!(matches!(last_chunk.data(), Err(BlockError::Corrupt { .. })));
    assert!(matches!(
        Block::open(&dir, true),
        Err(BlockError::Corrupt { .. })
    ));
    fs::write(&seg, &good[..good.len() - 3]).unwrap();
    assert!(matches!(
        Block::open(&dir, false),
        Err(BlockError::Corrupt { .. })
    ));
}

#[test]
fn open_rejects_bad_meta_and_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block(&dir, &fixture());
    let meta_path = dir.join(META_FILE);
    let good = fs::read(&meta_path).unwrap();
    fs::write(&meta_path, b"{not json").unwrap();
    assert!(matches!(
        Block::open(&dir, false),
        Err(BlockError::Corrupt { .. })
    ));
    let v2 = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"version\": 1", "\"version\": 2");
    fs::write(&meta_path, v2).unwrap();
    assert!(matches!(
        Block::open(&dir, false),
        Err(BlockError::UnsupportedVersion { .. })
    ));
    fs::write(&meta_path, &good).unwrap();
    fs::rename(
        dir.join(CHUNKS_DIR).join("000001"),
        dir.join(CHUNKS_DIR).join("000002"),
    )
    .unwrap();
    assert!(matches!(
        Block::open(&dir, false),
        Err(BlockError::Corrupt { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn prop_check_index_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = check_index(&bytes);
    }
}

#[test]
fn check_index_never_panics_on_mutated_real_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block(&dir, &fixture());
    let good = fs::read(dir.join(INDEX_FILE)).unwrap();
    assert_eq!(good[4], INDEX_FORMAT_VERSION);
    let summary = check_index(&good).unwrap();
    assert_eq!((summary.series, summary.chunks), (5, 10));
    mutate_every_byte_with_crcs_fixed(&good);
    // And an index of the previous version.
    let v1 = fs::read(packed_fixture_dir(index::INDEX_FORMAT_V1).join(INDEX_FILE)).unwrap();
    assert_eq!(v1[4], index::INDEX_FORMAT_V1);
    check_index(&v1).unwrap();
    mutate_every_byte_with_crcs_fixed(&v1);
}

/// The (offset, length) of each section of a valid index, from its TOC.
fn index_sections(index: &[u8]) -> Vec<(usize, usize)> {
    let toc_start = index.len() - index::TOC_LEN;
    (0..index::NUM_SECTIONS)
        .map(|i| {
            let e = &index[toc_start + i * 16..];
            let off = u64::from_be_bytes(e[..8].try_into().unwrap()) as usize;
            let len = u64::from_be_bytes(e[8..16].try_into().unwrap()) as usize;
            (off, len)
        })
        .collect()
}

/// Flips bits of every section byte of `good` and rewrites the section's
/// CRC, so the structural checks behind the checksums are what meets the
/// damage; `check_index` must return, never panic.
fn mutate_every_byte_with_crcs_fixed(good: &[u8]) {
    for &(off, len) in &index_sections(good) {
        for i in off..off + len {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.to_vec();
                bad[i] ^= flip;
                let crc = crc32fast::hash(&bad[off..off + len]);
                bad[off + len..off + len + 4].copy_from_slice(&crc.to_be_bytes());
                let _ = check_index(&bad);
            }
        }
    }
}

/// A series directory that claims more series than its section can hold,
/// or whose offsets do not tile the series section, is corruption at open.
#[test]
fn a_damaged_series_directory_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block(&dir, &fixture());
    let good = fs::read(dir.join(INDEX_FILE)).unwrap();
    let (off, len) = index_sections(&good)[index::SERIES_OFFSETS];
    let with = |edit: &dyn Fn(&mut [u8])| {
        let mut bad = good.clone();
        edit(&mut bad[off..off + len]);
        let crc = crc32fast::hash(&bad[off..off + len]);
        bad[off + len..off + len + 4].copy_from_slice(&crc.to_be_bytes());
        check_index(&bad)
    };
    // The count (the first 8 bytes).
    let r = with(&|d| d[..8].copy_from_slice(&u64::MAX.to_be_bytes()));
    assert!(
        matches!(
            r,
            Err(BlockError::Corrupt {
                reason: Corruption::CountOutOfRange { .. },
                ..
            })
        ),
        "{r:?}"
    );
    let r = with(&|d| d[..8].copy_from_slice(&4u64.to_be_bytes()));
    assert!(r.is_err(), "one series fewer: {r:?}");
    // The offset width (the byte after count and base).
    let r = with(&|d| d[16] = 5);
    assert!(matches!(r, Err(BlockError::Corrupt { .. })), "{r:?}");
    // The first offset (must be 0).
    let r = with(&|d| d[17..21].copy_from_slice(&3u32.to_be_bytes()));
    assert!(matches!(r, Err(BlockError::Corrupt { .. })), "{r:?}");
    // The second offset, past the series section.
    let r = with(&|d| d[21..25].copy_from_slice(&u32::MAX.to_be_bytes()));
    assert!(matches!(r, Err(BlockError::Corrupt { .. })), "{r:?}");
    // The first references: the last byte of the section is in their high
    // bits; clearing it loses the last series' bit.
    let r = with(&|d| {
        let last = d.len() - 1;
        d[last] = 0;
    });
    assert!(matches!(r, Err(BlockError::Corrupt { .. })), "{r:?}");
    // The time base moves every first chunk: still a valid index.
    let moved = with(&|d| d[15] ^= 1).unwrap();
    assert_eq!(moved.series, 5);
}

/// Every read a query or compaction makes of a block, all results
/// dropped: what must never panic, whatever the bytes.
fn read_everything(block: &Block) {
    let re = Matcher::new(MatchOp::Regex, "job", "a|.+").unwrap();
    for ms in [vec![], vec![Matcher::eq("__name__", "up")], vec![re]] {
        if let Ok(selected) = block.select(&ms, i64::MIN, i64::MAX) {
            for s in selected.iter() {
                for c in &s.chunks {
                    let _ = c.samples();
                }
            }
        }
        let _ = block.label_names(&ms);
        let _ = block.label_values("job", &ms);
        let _ = block.label_values("__name__", &ms);
    }
    for s in block.series().flatten() {
        for c in &s.chunks {
            let _ = c.samples();
        }
    }
}

#[test]
fn deferred_checks_find_what_open_finds_and_reads_before_them_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_block_with(&dir, &fixture(), 200);
    let block = Block::open_deferring_checks(&dir).unwrap();
    block.check(true).unwrap();
    read_everything(&block);
    drop(block);
    // Damage behind the section checksums (each section's CRC rewritten
    // after the flip), which only the full walk can find, then damage to
    // a chunk, which only the chunk CRCs can.
    let index_path = dir.join(INDEX_FILE);
    let good = fs::read(&index_path).unwrap();
    let toc_start = good.len() - index::TOC_LEN;
    let mut damaged = Vec::new();
    for s in 0..index::NUM_SECTIONS {
        let e = &good[toc_start + s * 16..];
        let off = u64::from_be_bytes(e[..8].try_into().unwrap()) as usize;
        let len = u64::from_be_bytes(e[8..16].try_into().unwrap()) as usize;
        for i in (off..off + len).step_by(3) {
            let mut bad = good.clone();
            bad[i] ^= 0x41;
            let crc = crc32fast::hash(&bad[off..off + len]);
            bad[off + len..off + len + 4].copy_from_slice(&crc.to_be_bytes());
            damaged.push((index_path.clone(), bad));
        }
    }
    let seg_path = dir.join(CHUNKS_DIR).join("000001");
    let seg = fs::read(&seg_path).unwrap();
    for i in positions(seg.len()) {
        let mut bad = seg.clone();
        bad[i] ^= 0x41;
        damaged.push((seg_path.clone(), bad));
    }
    let mut found_only_by_check = 0;
    for (path, bad) in &damaged {
        let good = fs::read(path).unwrap();
        fs::write(path, bad).unwrap();
        let at_open = Block::open(&dir, true)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let deferred = Block::open_deferring_checks(&dir).map_err(|e| e.to_string());
        let checked = match &deferred {
            Ok(block) => {
                read_everything(block);
                let checked = block.check(true).map_err(|e| e.to_string());
                if checked.is_err() {
                    found_only_by_check += 1;
                }
                checked
            }
            Err(e) => Err(e.clone()),
        };
        assert_eq!(checked, at_open, "{}", path.display());
        fs::write(path, good).unwrap();
    }
    assert!(
        found_only_by_check > damaged.len() / 2,
        "{found_only_by_check} of {}",
        damaged.len()
    );
}

#[test]
fn chunk_ref_packs_segment_and_offset() {
    let r = ChunkRef::new(3, 0xdead_beef);
    assert_eq!((r.segment(), r.offset()), (3, 0xdead_beef));
    assert_eq!(r.0, 0x0000_0003_dead_beef);
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Block>();
    f::<BlockSeries>();
    let _: Option<PathBuf> = None;
}

/// The format-v1 fixture block: `fixture()` written with 200-byte segments
/// and one tombstone. Regenerate (only with a format version bump) with
/// `TIDEMARK_WRITE_FIXTURE=1 cargo test --lib block_v1_fixture`.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/block-v1")
}

#[test]
fn block_v1_fixture_still_opens_and_reads_back() {
    let dir = fixture_dir();
    if std::env::var("TIDEMARK_WRITE_FIXTURE").as_deref() == Ok("1") {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        let mut w = BlockWriter::create_with_segment_size(&dir, 200).unwrap();
        for (labels, chunks) in &fixture() {
            let enc: Vec<Vec<u8>> = chunks.iter().map(|c| encode(c)).collect();
            let list: Vec<(i64, i64, &[u8])> = chunks
                .iter()
                .zip(&enc)
                .map(|(c, e)| (c[0].0, c[c.len() - 1].0, e.as_slice()))
                .collect();
            w.add_series(labels, &list).unwrap();
        }
        let mut meta = BlockMeta::new(0, 9_000);
        meta.ulid = "01JAAAAAAAAAAAAAAAAAAAAAAA".into();
        meta.compaction.sources = vec![meta.ulid.clone()];
        w.finish(meta).unwrap();
        let b = Block::open(&dir, true).unwrap();
        b.delete(&[Matcher::eq("job", "c")], 1_000, 2_000).unwrap();
    }
    let block = Block::open(&dir, true).unwrap();
    assert_eq!(block.meta().ulid, "01JAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!((block.meta().min_time, block.meta().max_time), (0, 9_000));
    let got: Data = block
        .series()
        .map(|s| {
            let s = s.unwrap();
            let chunks = read_all(&s);
            (s.labels, chunks)
        })
        .collect();
    assert_eq!(got, fixture());
    let ts = block.tombstones();
    assert_eq!(ts.len(), 1);
    let (id, ivs) = ts.iter().next().unwrap();
    let s = block.select(&[Matcher::eq("job", "c")], 0, 9_000).unwrap();
    assert_eq!(s[0].id, id);
    assert!(ivs.iter().eq([&Interval::new(1_000, 2_000)]));
}

/// Three series: `a` and `c` scraped at the same (jittered) times, `b` at
/// others; 2,500 samples each, so three runs.
fn sample_series() -> Vec<(Labels, Vec<crate::model::Sample>)> {
    use crate::model::Sample;
    let times = |seed: i64| -> Vec<i64> {
        (0..2500i64)
            .map(|i| 1_000_000 + i * 15_000 + (i * 7 + seed) % 6)
            .collect()
    };
    let (ab, b) = (times(0), times(3));
    vec![
        (
            labels(&[("__name__", "a")]),
            ab.iter()
                .map(|&t| Sample::new(t, (t % 1000) as f64 / 8.0))
                .collect(),
        ),
        (
            labels(&[("__name__", "b")]),
            b.iter().map(|&t| Sample::new(t, 3.0)).collect(),
        ),
        (
            labels(&[("__name__", "c")]),
            ab.iter()
                .enumerate()
                .map(|(i, &t)| {
                    let v = if i == 77 {
                        f64::from_bits(STALE_NAN_BITS)
                    } else {
                        i as f64
                    };
                    Sample::new(t, v)
                })
                .collect(),
        ),
    ]
}

fn write_sample_block(dir: &Path, segment_size: u64) -> Block {
    let mut w = BlockWriter::create_with_segment_size(dir, segment_size).unwrap();
    for (l, samples) in sample_series() {
        w.add_sample_series(&l, &samples).unwrap();
    }
    let (mint, maxt) = w.time_range().unwrap();
    w.finish(BlockMeta::new(mint, maxt + 1)).unwrap();
    Block::open(dir, true).unwrap()
}

fn sample_bits(s: &[crate::model::Sample]) -> Vec<(i64, u64)> {
    s.iter().map(|x| (x.t, x.v.to_bits())).collect()
}

#[test]
fn sample_series_are_packed_in_runs_and_share_equal_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let block = write_sample_block(&tmp.path().join("b"), SEGMENT_MAX_SIZE);
    let want = sample_series();
    let got: Vec<BlockSeries> = block.series().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 3);
    for (s, (l, samples)) in got.iter().zip(&want) {
        assert_eq!(&s.labels, l);
        let lens: Vec<usize> = s
            .chunks
            .iter()
            .map(|c| c.samples().unwrap().len())
            .collect();
        assert_eq!(lens, vec![1024, 1024, 452]);
        let all: Vec<_> = s.chunks.iter().flat_map(|c| c.samples().unwrap()).collect();
        assert_eq!(sample_bits(&all), sample_bits(samples), "{l}");
        assert!(s
            .chunks
            .iter()
            .all(|c| c.data().unwrap().0 == Encoding::Packed));
    }
    // `c` takes its timestamps from `a`: its chunks hold values only.
    let size = |s: &BlockSeries| s.chunks.iter().map(BlockChunk::len).sum::<usize>();
    assert!(
        size(&got[2]) < size(&got[0]) / 2,
        "{} vs {}",
        size(&got[2]),
        size(&got[0])
    );
    // `b`, a constant with its own timestamps, still pays for them.
    assert!(size(&got[1]) > size(&got[2]) / 4);
}

/// A run that could share another's timestamps but whose values have no
/// decimal form (a constant beyond 2^53, as `node_filefd_maximum`) is
/// stored as XOR when that is smaller: 200 exceptions of 9 bytes shared,
/// a few hundred bytes as XOR with its own timestamps.
#[test]
fn shared_runs_of_non_decimal_values_fall_back_to_xor() {
    use crate::model::Sample;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let times: Vec<i64> = (0..200i64)
        .map(|i| 1_000_000 + i * 15_000 + (i * 7) % 6)
        .collect();
    let series = [
        (labels(&[("__name__", "a")]), 1.5),
        (labels(&[("__name__", "b")]), 9_223_372_036_854_775_807.0),
    ];
    let mut w = BlockWriter::create_with_segment_size(&dir, SEGMENT_MAX_SIZE).unwrap();
    for (l, v) in &series {
        let samples: Vec<Sample> = times.iter().map(|&t| Sample::new(t, *v)).collect();
        w.add_sample_series(l, &samples).unwrap();
    }
    let (mint, maxt) = w.time_range().unwrap();
    w.finish(BlockMeta::new(mint, maxt + 1)).unwrap();
    let block = Block::open(&dir, true).unwrap();
    let got: Vec<BlockSeries> = block.series().collect::<Result<_, _>>().unwrap();
    assert_eq!(got[0].chunks[0].data().unwrap().0, Encoding::Packed);
    let b = &got[1].chunks[0];
    assert_eq!(b.data().unwrap().0, Encoding::Xor);
    assert!(b.len() < 600, "{} bytes", b.len());
    let all = b.samples().unwrap();
    assert_eq!(all.len(), 200);
    assert!(all.iter().all(|s| s.v == 9_223_372_036_854_775_807.0));
}

#[test]
fn shared_timestamps_never_cross_a_segment_and_a_damaged_owner_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    // Segments of ~1 KiB: every chunk in a segment of its own, so nothing
    // can be shared, and everything still reads back.
    let small = write_sample_block(&tmp.path().join("small"), 1024);
    for (s, (_, samples)) in small.series().map(Result::unwrap).zip(sample_series()) {
        let all: Vec<_> = s.chunks.iter().flat_map(|c| c.samples().unwrap()).collect();
        assert_eq!(sample_bits(&all), sample_bits(&samples));
    }
    // Damage `a`'s first chunk (the owner of `c`'s timestamps) in place:
    // `c` then fails to decode, loudly, rather than read wrong times.
    let dir = tmp.path().join("b");
    let block = write_sample_block(&dir, SEGMENT_MAX_SIZE);
    let owner = block.series().next().unwrap().unwrap().chunks[0].chunk_ref();
    drop(block);
    let seg = dir.join(CHUNKS_DIR).join("000001");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[owner.offset() as usize + 5] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    let block = Block::open(&dir, false).unwrap();
    let c = block.series().nth(2).unwrap().unwrap();
    assert!(matches!(
        c.chunks[0].samples(),
        Err(BlockError::Corrupt { .. })
    ));
}

/// The packed-chunk fixture blocks: `sample_series()` written as the block
/// writer writes persisted blocks (packed chunks, shared timestamps), with
/// 4 KiB segments so shared timestamps meet segment ends; `-v1` with index
/// format 1, `-v2` with index format 2 (same chunk segments). Both must
/// keep opening and reading back bit-exactly. Regenerate the newest (only
/// with a format version bump, into a new directory) with
/// `TIDEMARK_WRITE_FIXTURE=1 cargo test --lib block_packed_fixture`.
fn packed_fixture_dir(index_version: u8) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/testdata/block-packed-v{index_version}"))
}

fn check_packed_fixture(index_version: u8) {
    let dir = packed_fixture_dir(index_version);
    let index = fs::read(dir.join(INDEX_FILE)).unwrap();
    assert_eq!(index[4], index_version, "the fixture's index version");
    let block = Block::open(&dir, true).unwrap();
    assert_eq!(block.meta().ulid, "01JBBBBBBBBBBBBBBBBBBBBBBB");
    let got: Vec<BlockSeries> = block.series().collect::<Result<_, _>>().unwrap();
    let want = sample_series();
    assert_eq!(got.len(), want.len());
    let mut packed = 0;
    for (s, (l, samples)) in got.iter().zip(&want) {
        assert_eq!(&s.labels, l);
        let all: Vec<_> = s.chunks.iter().flat_map(|c| c.samples().unwrap()).collect();
        assert_eq!(sample_bits(&all), sample_bits(samples), "{l}");
        packed += s
            .chunks
            .iter()
            .filter(|c| c.data().unwrap().0 == Encoding::Packed)
            .count();
    }
    assert!(packed >= 9, "the fixture holds packed chunks ({packed})");
}

#[test]
fn block_packed_fixture_v1_still_opens_and_reads_back() {
    check_packed_fixture(index::INDEX_FORMAT_V1);
}

#[test]
fn block_packed_fixture_still_opens_and_reads_back() {
    let dir = packed_fixture_dir(INDEX_FORMAT_VERSION);
    if std::env::var("TIDEMARK_WRITE_FIXTURE").as_deref() == Ok("1") {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        write_packed_fixture(&dir);
    }
    check_packed_fixture(INDEX_FORMAT_VERSION);
}

/// Writes `sample_series()` into `dir` as the packed fixture is written.
fn write_packed_fixture(dir: &Path) {
    let mut w = BlockWriter::create_with_segment_size(dir, 4096).unwrap();
    for (l, samples) in sample_series() {
        w.add_sample_series(&l, &samples).unwrap();
    }
    let (mint, maxt) = w.time_range().unwrap();
    let mut meta = BlockMeta::new(mint, maxt + 1);
    meta.ulid = "01JBBBBBBBBBBBBBBBBBBBBBBB".into();
    meta.compaction.sources = vec![meta.ulid.clone()];
    w.finish(meta).unwrap();
}

/// The writer of today still writes the packed fixture byte for byte: the
/// index (every section, its CRC and the TOC) and the chunk segments. A
/// change to the writer that changes the bytes needs a format version bump.
#[test]
fn writer_reproduces_the_packed_fixture_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write_packed_fixture(&dir);
    let fixture = packed_fixture_dir(INDEX_FORMAT_VERSION);
    assert_eq!(
        fs::read(dir.join(INDEX_FILE)).unwrap(),
        fs::read(fixture.join(INDEX_FILE)).unwrap(),
        "index bytes differ from the fixture's"
    );
    let mut segments: Vec<_> = fs::read_dir(fixture.join(CHUNKS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    segments.sort();
    assert!(!segments.is_empty());
    for name in segments {
        assert_eq!(
            fs::read(dir.join(CHUNKS_DIR).join(&name)).unwrap(),
            fs::read(fixture.join(CHUNKS_DIR).join(&name)).unwrap(),
            "chunk segment {name:?} differs"
        );
    }
}

/// Each kind of damage is reported with its typed reason and where it is.
#[test]
fn corruption_reasons_are_typed() {
    let reason = |r: Result<Block, BlockError>| match r {
        Err(BlockError::Corrupt { reason, .. }) => reason,
        Err(e) => panic!("not a corruption: {e}"),
        Ok(_) => panic!("damaged block opened"),
    };
    let fresh = || {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        write_block(&dir, &fixture());
        (tmp, dir)
    };

    let (_t, dir) = fresh();
    let mut index = fs::read(dir.join(INDEX_FILE)).unwrap();
    index[0] ^= 0xff;
    fs::write(dir.join(INDEX_FILE), &index).unwrap();
    let r = reason(Block::open(&dir, true));
    assert!(matches!(r, Corruption::BadMagic { .. }), "{r}");
    assert_eq!(r.reason(), "bad_magic");

    // A byte inside the symbols section (it starts right after the header).
    let (_t, dir) = fresh();
    let mut index = fs::read(dir.join(INDEX_FILE)).unwrap();
    index[index::HEADER_LEN + 5] ^= 0x01;
    fs::write(dir.join(INDEX_FILE), &index).unwrap();
    let r = reason(Block::open(&dir, true));
    assert!(
        matches!(
            r,
            Corruption::ChecksumMismatch {
                part: Part::Section(IndexSection::Symbols),
                ..
            }
        ),
        "{r}"
    );

    let (_t, dir) = fresh();
    fs::remove_file(dir.join(CHUNKS_DIR).join("000001")).unwrap();
    let r = reason(Block::open(&dir, true));
    assert!(
        matches!(r, Corruption::MissingSegment { segment: 1 }),
        "{r}"
    );

    let (_t, dir) = fresh();
    fs::write(dir.join(CHUNKS_DIR).join("notes.txt"), b"x").unwrap();
    let r = reason(Block::open(&dir, true));
    assert!(matches!(r, Corruption::UnexpectedFile), "{r}");

    let (_t, dir) = fresh();
    fs::write(dir.join("meta.json"), b"{").unwrap();
    let r = reason(Block::open(&dir, true));
    assert!(matches!(r, Corruption::InvalidMeta(_)), "{r}");

    let (_t, dir) = fresh();
    let mut ts = fs::read(dir.join(TOMBSTONES_FILE)).unwrap();
    ts[4] = 9;
    fs::write(dir.join(TOMBSTONES_FILE), &ts).unwrap();
    let r = reason(Block::open(&dir, true));
    assert!(
        matches!(r, Corruption::UnknownVersion { version: 9 }),
        "{r}"
    );

    // A chunk's CRC, found only when chunks are verified.
    let (_t, dir) = fresh();
    let seg = dir.join(CHUNKS_DIR).join("000001");
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let r = reason(Block::open(&dir, true));
    assert!(
        matches!(
            r,
            Corruption::ChecksumMismatch {
                part: Part::Chunk,
                ..
            }
        ),
        "{r}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The planner (forced to each choice by the label-check cost) selects
    /// what the plain postings answer selects, and both what brute force
    /// over the labels selects.
    #[test]
    fn prop_block_planner_answers_like_plain_postings(
        sets in proptest::collection::btree_set(crate::storage::head::fleet_labels(), 1..150),
        queries in proptest::collection::vec(proptest::collection::vec(crate::storage::head::fleet_matcher(), 0..4), 1..6),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        let data: Data = sets.iter().map(|l| (l.clone(), vec![vec![(1_000, 0)]])).collect();
        write_block(&dir, &data);
        let block = Block::open(&dir, true).unwrap();
        for ms in &queries {
            let brute: Vec<u64> = data
                .keys()
                .enumerate()
                .filter(|(_, l)| ms.iter().all(|m| m.matches(l.get(m.name()).unwrap_or(""))))
                .map(|(i, _)| i as u64)
                .collect();
            prop_assert_eq!(&block.postings_for_matchers_plain(ms).unwrap(), &brute, "{:?}", ms);
            for cost in [0, 1, crate::storage::plan::CHECK_COST, 1 << 40] {
                prop_assert_eq!(&block.postings_for_matchers_planned(ms, cost).unwrap(), &brute, "{:?} check cost {}", ms, cost);
            }
        }
    }
}

#[test]
fn planner_checks_a_wide_regex_on_the_series_entries_of_few_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let mut data = Data::new();
    for i in 0..200 {
        for m in 0..100 {
            let l = Labels::try_from_pairs([
                ("__name__", format!("m{m}")),
                ("instance", format!("i{i:03}")),
            ])
            .unwrap();
            data.insert(l, vec![vec![(1_000, 0)]]);
        }
    }
    write_block(&dir, &data);
    let block = Block::open(&dir, false).unwrap();
    let ms = [
        Matcher::eq("__name__", "m7"),
        Matcher::new(MatchOp::Regex, "instance", "i.*[05]").unwrap(),
    ];
    let want: Vec<String> = (0..200)
        .filter(|i| i % 5 == 0)
        .map(|i| format!("i{i:03}"))
        .collect();
    // Checked on entries (the default cost) and merged (cost 0): same ids.
    let checked = block
        .postings_for_matchers_planned(&ms, crate::storage::plan::CHECK_COST)
        .unwrap();
    assert_eq!(
        checked,
        block.postings_for_matchers_planned(&ms, 0).unwrap()
    );
    assert_eq!(checked.len(), 40);
    assert_eq!(block.label_values("instance", &ms).unwrap(), want);
    // A regex matching "" checked on entries keeps series without the label.
    let ms = [
        Matcher::eq("instance", "i005"),
        Matcher::new(MatchOp::Regex, "nope", "x|").unwrap(),
        Matcher::new(MatchOp::NotRegex, "__name__", "m1.*").unwrap(),
    ];
    assert_eq!(block.select(&ms, i64::MIN, i64::MAX).unwrap().len(), 89);
}
