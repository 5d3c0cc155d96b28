//! Fuzzes the head snapshot loader (`head_snapshot`, written on a clean
//! shutdown, `docs/format/head-snapshot.md`): arbitrary bytes given as the
//! file must never panic `check_head_snapshot`, which decodes them into a
//! fresh head as `Db::open` does. The trailing CRC makes random bytes fail
//! at once, so the target also retries with the magic `TMHS`, a version it
//! reads (1 to 5) and the CRC set, to reach the decoder behind them: series,
//! labels, XOR and packed full chunks, open chunks, histogram chunks,
//! out-of-order samples and tombstones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::storage::check_head_snapshot;

fuzz_target!(|data: &[u8]| {
    let _ = check_head_snapshot(data);
    // Magic, version from the first byte, 3 reserved bytes, the body, CRC.
    let Some((&v, body)) = data.split_first() else {
        return;
    };
    let mut framed = b"TMHS".to_vec();
    framed.push(v % 5 + 1);
    framed.extend_from_slice(&[0, 0, 0]);
    framed.extend_from_slice(body);
    let crc = crc32fast::hash(&framed);
    framed.extend_from_slice(&crc.to_be_bytes());
    let _ = check_head_snapshot(&framed);
});
