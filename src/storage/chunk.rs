//! Chunk codecs: the compressed sample runs that the head keeps in memory
//! and that blocks will store in chunk segment files. Only the Gorilla XOR
//! float encoding exists so far ([`XorAppender`], [`XorIter`]).
//!
//! This module owns the bytes of one chunk and nothing around them: no
//! length prefix, encoding byte or checksum (those belong to the WAL and
//! block files), no knowledge of series or of when to cut a chunk.
//! Format: `docs/format/chunks.md`.

mod bstream;
mod xor;

pub use xor::{XorAppender, XorIter};

/// Target samples per head chunk; the head cuts a new chunk at this count.
/// Prometheus' value: compression gains flatten out past ~120 samples while
/// decoding cost for a query grows with the chunk.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Bytes of the chunk header: the sample count as a big-endian `u16`.
const HEADER_LEN: usize = 2;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the 2-byte sample count header.
    #[error("chunk of {len} bytes is shorter than its 2-byte header")]
    TooShort {
        /// Length of the chunk in bytes.
        len: usize,
    },
    /// The bytes ended before the sample count in the header was reached.
    #[error("chunk truncated in sample {sample} starting at bit {bit_offset}")]
    Truncated {
        /// Index of the sample being decoded.
        sample: usize,
        /// Bit offset from the chunk start where that sample begins.
        bit_offset: usize,
    },
    /// A varint field (first timestamp, first delta) overflows 64 bits.
    #[error("varint in sample {sample} at byte {byte_offset} overflows 64 bits")]
    VarintOverflow {
        /// Index of the sample being decoded.
        sample: usize,
        /// Byte offset from the chunk start where the varint begins.
        byte_offset: usize,
    },
    /// A decoded timestamp is not after the previous one.
    #[error("sample {sample} at bit {bit_offset}: timestamp {t} is not after {prev_t}")]
    NotIncreasing {
        /// Index of the sample being decoded.
        sample: usize,
        /// Bit offset from the chunk start where that sample begins.
        bit_offset: usize,
        /// Timestamp of the previous sample.
        prev_t: i64,
        /// The decoded timestamp.
        t: i64,
    },
    /// A value's XOR window claims more than 64 bits.
    #[error("sample {sample} at bit {bit_offset}: XOR window of {leading} leading + {sig} significant bits exceeds 64")]
    BadXorWindow {
        /// Index of the sample being decoded.
        sample: usize,
        /// Bit offset from the chunk start where that sample begins.
        bit_offset: usize,
        /// Leading zero bits read.
        leading: u8,
        /// Significant bits read.
        sig: u8,
    },
}

/// Result of chunk decoding.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Number of samples recorded in a chunk's header.
///
/// # Errors
/// [`Error::TooShort`] if `bytes` has no complete header.
pub fn num_samples(bytes: &[u8]) -> Result<u16> {
    match bytes.first_chunk::<HEADER_LEN>() {
        Some(h) => Ok(u16::from_be_bytes(*h)),
        None => Err(Error::TooShort { len: bytes.len() }),
    }
}
