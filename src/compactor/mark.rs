//! `<ulid>/deletion-mark.json`: the compactor's note that a block is to
//! be deleted, in Thanos's format (`metadata.DeletionMark`,
//! thanos-io/thanos `pkg/block/metadata/markers.go`), so Thanos tools
//! read it. Owns the JSON shape only. Format: docs/format/deletion-mark.md.

use serde::{Deserialize, Serialize};

/// The `version` this code writes and the only one it reads.
pub const DELETION_MARK_VERSION: u32 = 1;

/// The contents of `deletion-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The marked block's ULID (its prefix).
    pub id: String,
    /// When the mark was written, Unix seconds; the block is deleted
    /// `--delete-delay` after it.
    pub deletion_time: i64,
    /// [`DELETION_MARK_VERSION`].
    pub version: u32,
    /// Why (Thanos's optional `details`): `compacted into <ulid>` or
    /// `retention`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl DeletionMark {
    /// The file's bytes: pretty JSON and a final newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a struct of strings and ints");
        out.push(b'\n');
        out
    }

    /// Reads block `ulid`'s mark.
    ///
    /// # Errors
    /// A message naming the problem: not JSON of this shape, another
    /// block's id, another version.
    pub fn parse(ulid: &str, body: &[u8]) -> Result<Self, String> {
        let m: Self = serde_json::from_slice(body).map_err(|e| format!("does not parse: {e}"))?;
        if m.id != ulid {
            return Err(format!("names block {:?}", m.id));
        }
        if m.version != DELETION_MARK_VERSION {
            return Err(format!(
                "version {} (want {DELETION_MARK_VERSION})",
                m.version
            ));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("../../tests/testdata/deletion-mark-v1/deletion-mark.json");
    const ULID: &str = "01HF8ZJ1M8Y4QH7W0T5N3C2B1A";

    #[test]
    fn deletion_mark_golden_v1_reads_and_writes_byte_equal() {
        let m = DeletionMark::parse(ULID, GOLDEN.as_bytes()).unwrap();
        assert_eq!(m.deletion_time, 1_699_963_200);
        assert_eq!(m.details, "compacted into 01HF9A7KQ2V6D3E8R1S4T5W6X7");
        assert_eq!(String::from_utf8(m.encode()).unwrap(), GOLDEN);
    }

    #[test]
    fn thanos_mark_without_details_reads() {
        let body = format!(r#"{{"id":"{ULID}","deletion_time":1,"version":1}}"#);
        let m = DeletionMark::parse(ULID, body.as_bytes()).unwrap();
        assert_eq!(m.details, "");
        assert!(!String::from_utf8(m.encode()).unwrap().contains("details"));
    }

    #[test]
    fn foreign_or_broken_marks_are_named() {
        for (body, want) in [
            ("{".to_string(), "does not parse"),
            (
                r#"{"id":"01HAAAAAAAAAAAAAAAAAAAAAAA","deletion_time":1,"version":1}"#.to_string(),
                "names block",
            ),
            (
                format!(r#"{{"id":"{ULID}","deletion_time":1,"version":2}}"#),
                "version 2",
            ),
        ] {
            let e = DeletionMark::parse(ULID, body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }
}
