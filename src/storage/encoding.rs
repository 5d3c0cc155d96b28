//! Byte-level helpers shared by every on-disk format: unsigned and zig-zag
//! varints, fixed-width big-endian integers, and a bounds-checked decoding
//! cursor. This is the only place where bytes are parsed by hand; codecs
//! (`chunk`, `wal`, later `index`) build on it.

/// A decoding failure: what was expected and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before a value was complete.
    #[error("unexpected end of input at byte {at} (wanted {wanted} more bytes)")]
    UnexpectedEof {
        /// Offset where the value started.
        at: usize,
        /// How many bytes were missing (at least).
        wanted: usize,
    },
    /// A varint ran past 10 bytes or overflowed 64 bits.
    #[error("varint overflows 64 bits at byte {at}")]
    VarintOverflow {
        /// Offset where the varint started.
        at: usize,
    },
}

/// Bytes [`put_uvarint`] writes for `v` (1-10).
#[inline]
pub fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Bytes [`put_varint`] writes for `v` (1-10).
#[inline]
pub fn varint_len(v: i64) -> usize {
    let u = ((v << 1) ^ (v >> 63)) as u64;
    (64 - u.leading_zeros() as usize).div_ceil(7).max(1)
}

/// Splits an unsigned LEB128 varint (protobuf's varint encoding) off the
/// front of `b`: the value and the bytes after it. `None` when `b` ends
/// inside the varint or it exceeds 64 bits. For decoders that walk a
/// shrinking slice (the remote-write wire decoder and its limit scan);
/// [`Decbuf::uvarint`] is the positioned form.
#[inline]
pub fn split_uvarint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// Reads an unsigned LEB128 varint from a byte stream (block scratch
/// files); [`Decbuf::uvarint`] is the in-memory form.
///
/// # Errors
/// The stream's error, or `InvalidData` past 64 bits.
pub fn read_uvarint(r: &mut impl std::io::Read) -> std::io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        r.read_exact(&mut b)?;
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] < 0x80 {
            return Ok(v);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "varint overflow",
    ))
}

/// Appends `v` as an unsigned LEB128 varint (1-10 bytes).
#[inline]
pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zig-zag encoded as a varint, so small negative numbers stay short.
#[inline]
pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends `v` as 4 big-endian bytes.
#[inline]
pub fn put_be_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Appends `v` as 8 big-endian bytes.
#[inline]
pub fn put_be_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Appends a uvarint length followed by the bytes of `s`.
#[inline]
pub fn put_uvarint_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// A bounds-checked reading cursor over a byte slice. Every method fails with
/// [`DecodeError`] instead of panicking on short or malformed input.
#[derive(Debug, Clone)]
pub struct Decbuf<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Decbuf<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Current offset from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Reports whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Reads an unsigned varint.
    ///
    /// # Errors
    /// On truncation or overflow.
    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(DecodeError::UnexpectedEof {
                    at: start,
                    wanted: 1,
                });
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(DecodeError::VarintOverflow { at: start });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::VarintOverflow { at: start });
            }
        }
    }

    /// Reads a zig-zag varint.
    ///
    /// # Errors
    /// On truncation or overflow.
    #[inline]
    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// At end of input.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads 4 big-endian bytes.
    ///
    /// # Errors
    /// On truncation.
    #[inline]
    pub fn be_u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads 8 big-endian bytes.
    ///
    /// # Errors
    /// On truncation.
    #[inline]
    pub fn be_u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads `n` raw bytes.
    ///
    /// # Errors
    /// When fewer than `n` remain.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::UnexpectedEof {
                at: self.pos,
                wanted: n - self.remaining(),
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads a uvarint length and that many bytes.
    ///
    /// # Errors
    /// On truncation.
    pub fn uvarint_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::UnexpectedEof {
            at,
            wanted: usize::MAX,
        })?;
        self.bytes(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_varints_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut b = Vec::new();
            put_uvarint(&mut b, u);
            put_varint(&mut b, i);
            put_be_u64(&mut b, u);
            put_be_u32(&mut b, u as u32);
            let mut d = Decbuf::new(&b);
            prop_assert_eq!(d.uvarint().unwrap(), u);
            prop_assert_eq!(d.varint().unwrap(), i);
            prop_assert_eq!(d.be_u64().unwrap(), u);
            prop_assert_eq!(d.be_u32().unwrap(), u as u32);
            prop_assert!(d.is_empty());
        }

        #[test]
        fn prop_split_uvarint_agrees_with_decbuf(bytes in proptest::collection::vec(any::<u8>(), 0..12), u in any::<u64>()) {
            let mut b = Vec::new();
            put_uvarint(&mut b, u);
            b.push(7);
            prop_assert_eq!(split_uvarint(&b), Some((u, &[7u8][..])));
            let mut d = Decbuf::new(&bytes);
            let positioned = d.uvarint().ok().map(|v| (v, &bytes[d.position()..]));
            prop_assert_eq!(split_uvarint(&bytes), positioned);
        }

        #[test]
        fn prop_decbuf_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Decbuf::new(&bytes);
            while !d.is_empty() {
                if d.uvarint().is_err() || d.uvarint_bytes().is_err() || d.be_u32().is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn lengths_match_what_is_written() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX / 3, u64::MAX] {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            assert_eq!(uvarint_len(v), buf.len(), "{v}");
            assert_eq!(read_uvarint(&mut buf.as_slice()).unwrap(), v);
        }
        for v in [0i64, -1, 63, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(varint_len(v), buf.len(), "{v}");
        }
    }

    #[test]
    fn uvarint_overflow_detected() {
        let b = [0xff; 11];
        assert_eq!(
            Decbuf::new(&b).uvarint(),
            Err(DecodeError::VarintOverflow { at: 0 })
        );
        let b = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            Decbuf::new(&b).uvarint(),
            Err(DecodeError::VarintOverflow { at: 0 })
        );
    }

    #[test]
    fn truncated_input_reports_offset() {
        let mut d = Decbuf::new(&[1, 2]);
        d.u8().unwrap();
        assert_eq!(
            d.be_u32(),
            Err(DecodeError::UnexpectedEof { at: 1, wanted: 3 })
        );
    }
}
