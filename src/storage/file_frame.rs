//! The frame of the head's single-file state (`head_snapshot`,
//! `head_metadata`): `magic <4b> | version <1b> | reserved <3b, zero> |
//! body | crc <4b>`, the CRC-32 (IEEE, `crc32fast`) of every byte before it,
//! big-endian; and the atomic write of such a file (tmp, fsync, rename,
//! fsync dir). Layouts of the bodies: `docs/format/head-snapshot.md` and
//! `docs/format/head-metadata.md`.
//!
//! Owns the frame only: never interprets a body, never chooses a path.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::storage::encoding::put_be_u32;

/// Bytes before the body: magic, version, three reserved bytes.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Bytes after the body: the CRC.
const FRAME_TRAILER_LEN: usize = 4;

/// Why a framed file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// Shorter than a header and a CRC.
    #[error("file of {len} bytes is too short for its frame")]
    TooShort { len: usize },
    /// The first four bytes are not the expected magic.
    #[error("bad magic {got:?}, expected {expected:?}")]
    BadMagic { expected: [u8; 4], got: [u8; 4] },
    /// A version this build does not read.
    #[error("format version {got}, this build reads {expected}")]
    UnsupportedVersion { expected: u8, got: u8 },
    /// The CRC does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
}

/// Starts a framed file in `buf`: header with `magic` and `version`; the
/// body follows, then [`seal`].
pub(crate) fn start(buf: &mut Vec<u8>, magic: [u8; 4], version: u8) {
    buf.extend_from_slice(&magic);
    buf.extend_from_slice(&[version, 0, 0, 0]);
}

/// Ends a framed file begun with [`start`]: appends the CRC.
pub(crate) fn seal(buf: &mut Vec<u8>) {
    let crc = crc32fast::hash(buf);
    put_be_u32(buf, crc);
}

/// Checks the frame of `bytes` and returns the version found (within
/// `versions`) and the body.
///
/// # Errors
/// [`FrameError`] when the file is too short, has another magic or a
/// version outside `versions` ([`FrameError::UnsupportedVersion`] names
/// the newest read), or fails its CRC.
pub(crate) fn open_versions(
    bytes: &[u8],
    magic: [u8; 4],
    versions: std::ops::RangeInclusive<u8>,
) -> Result<(u8, &[u8]), FrameError> {
    if bytes.len() < FRAME_HEADER_LEN + FRAME_TRAILER_LEN {
        return Err(FrameError::TooShort { len: bytes.len() });
    }
    let got = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if got != magic {
        return Err(FrameError::BadMagic {
            expected: magic,
            got,
        });
    }
    if !versions.contains(&bytes[4]) {
        return Err(FrameError::UnsupportedVersion {
            expected: *versions.end(),
            got: bytes[4],
        });
    }
    let (framed, crc) = bytes.split_at(bytes.len() - FRAME_TRAILER_LEN);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(framed);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok((bytes[4], &framed[FRAME_HEADER_LEN..]))
}

/// Writes `bytes` to `path` atomically: `<path>.tmp`, fsync, rename, fsync
/// of the directory.
///
/// # Errors
/// Any I/O failure; `path` is then either the old file or absent.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(bytes: &[u8], magic: [u8; 4], version: u8) -> Result<&[u8], FrameError> {
        open_versions(bytes, magic, version..=version).map(|(_, body)| body)
    }

    #[test]
    fn frame_round_trips_and_damage_is_named() {
        let mut buf = Vec::new();
        start(&mut buf, *b"TEST", 2);
        buf.extend_from_slice(b"body");
        seal(&mut buf);
        assert_eq!(open(&buf, *b"TEST", 2), Ok(&b"body"[..]));
        assert!(matches!(
            open(&buf, *b"XXXX", 2),
            Err(FrameError::BadMagic { .. })
        ));
        assert_eq!(
            open(&buf, *b"TEST", 3),
            Err(FrameError::UnsupportedVersion {
                expected: 3,
                got: 2
            })
        );
        let mut bad = buf.clone();
        bad[9] ^= 1;
        assert!(matches!(
            open(&bad, *b"TEST", 2),
            Err(FrameError::Checksum { .. })
        ));
        assert_eq!(
            open(&buf[..5], *b"TEST", 2),
            Err(FrameError::TooShort { len: 5 })
        );
    }
}
