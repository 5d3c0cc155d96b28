//! Fuzzes the block index parser: arbitrary bytes given as an index file
//! must never panic; `check_index` parses the TOC, verifies checksums and
//! walks every series and postings list, bounds-checking each offset.
//! Checksums make random bytes fail early, so the target also retries with
//! every section CRC and the TOC CRC recomputed, to reach the structural
//! checks behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::storage::block::check_index;

const SECTIONS: usize = 6;
const TOC_LEN: usize = SECTIONS * 16 + 4;

fn fix_crcs(data: &mut [u8]) {
    if data.len() < 5 + TOC_LEN {
        return;
    }
    let toc_start = data.len() - TOC_LEN;
    for i in 0..SECTIONS {
        let e = toc_start + i * 16;
        let off = u64::from_be_bytes(data[e..e + 8].try_into().unwrap_or_default());
        let len = u64::from_be_bytes(data[e + 8..e + 16].try_into().unwrap_or_default());
        let (Ok(off), Ok(len)) = (usize::try_from(off), usize::try_from(len)) else {
            return;
        };
        let Some(end) = off.checked_add(len) else { return };
        if end.checked_add(4).is_none_or(|x| x > toc_start) {
            return;
        }
        let crc = crc32fast::hash(&data[off..end]);
        data[end..end + 4].copy_from_slice(&crc.to_be_bytes());
    }
    let crc = crc32fast::hash(&data[toc_start..data.len() - 4]);
    let n = data.len();
    data[n - 4..].copy_from_slice(&crc.to_be_bytes());
}

fuzz_target!(|data: &[u8]| {
    let _ = check_index(data);
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed);
    let _ = check_index(&fixed);
});
