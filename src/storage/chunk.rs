//! Chunk codecs: the compressed sample runs that the head keeps in memory
//! and that blocks store in chunk segment files. The head appends to Gorilla
//! XOR chunks ([`XorAppender`], [`XorIter`]); blocks store packed chunks
//! ([`encode_packed`], [`decode_packed`]), which are written whole and so
//! compress far better, and still read XOR chunks written before them.
//! [`Encoding`] names the two; [`decode`] reads either.
//!
//! This module owns the bytes of one chunk and nothing around them: no
//! length prefix, encoding byte or checksum (those belong to the WAL and
//! block files), no knowledge of series or of when to cut a chunk.
//! Format: `docs/format/chunks.md`.

pub(crate) mod bstream;
mod float_histogram;
mod histogram;
mod histogram_meta;
mod histogram_run;
mod packed;
mod varbit;
mod xor;

pub use float_histogram::{FloatHistogramAppender, FloatHistogramIter};
pub use histogram::{HistogramAppender, HistogramIter};
pub use histogram_meta::CounterResetHeader;
pub use histogram_run::{
    decode_histogram_values, encode_histogram_run, EncodedChunk, BLOCK_HISTOGRAM_CHUNK_BYTES,
    BLOCK_HISTOGRAM_CHUNK_SAMPLES,
};
pub(crate) use packed::{decimal_at, from_decimal, to_decimal};
pub use packed::{
    decode_packed, decode_packed_with, encode_packed, encode_packed_shared,
    shared_timestamps_owner, timestamp_section, MAX_PACKED_SAMPLES,
};
pub(crate) use xor::{read_dod, read_xor, write_dod, write_xor, XorFault, NO_WINDOW};
pub use xor::{XorAppender, XorIter};

use crate::model::Sample;

/// How a chunk's bytes are encoded; the byte is stored beside every chunk
/// in block chunk segments (`docs/format/chunks-segment.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Gorilla XOR (`docs/format/chunks.md`), Prometheus's encoding 1.
    Xor,
    /// Packed (`docs/format/chunks-packed.md`), Tidemark's own. The byte is
    /// far from Prometheus's (1-3) so the two can never be confused.
    Packed,
    /// Integer native histograms (`docs/format/chunks-histogram.md`),
    /// Prometheus's encoding 2.
    Histogram,
    /// Float native histograms (`docs/format/chunks-histogram.md`),
    /// Prometheus's encoding 3.
    FloatHistogram,
}

impl Encoding {
    /// The byte stored for this encoding.
    pub fn to_byte(self) -> u8 {
        match self {
            Encoding::Xor => 1,
            Encoding::Histogram => 2,
            Encoding::FloatHistogram => 3,
            Encoding::Packed => 0x50,
        }
    }

    /// The encoding a stored byte names, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::Histogram),
            3 => Some(Encoding::FloatHistogram),
            0x50 => Some(Encoding::Packed),
            _ => None,
        }
    }
}

impl Encoding {
    /// Reports whether chunks of this encoding hold histogram samples.
    pub fn is_histogram(self) -> bool {
        matches!(self, Encoding::Histogram | Encoding::FloatHistogram)
    }
}

/// Decodes a whole float-sample chunk (XOR or packed).
///
/// # Errors
/// Whatever the encoding's decoder reports for malformed bytes;
/// [`Error::NotFloatSamples`] for a histogram chunk.
pub fn decode(encoding: Encoding, bytes: &[u8]) -> Result<Vec<Sample>> {
    match encoding {
        Encoding::Histogram | Encoding::FloatHistogram => Err(Error::NotFloatSamples {
            encoding: encoding.to_byte(),
        }),
        Encoding::Packed => decode_packed(bytes),
        Encoding::Xor => {
            let mut it = XorIter::new(bytes);
            let samples: Vec<Sample> = it.by_ref().collect();
            match it.err() {
                Some(e) => Err(e.clone()),
                None => Ok(samples),
            }
        }
    }
}

/// Encodes one run of samples (at most [`MAX_PACKED_SAMPLES`], strictly
/// increasing timestamps) the way blocks store it: packed, unless its XOR
/// chunk is smaller (values with no decimal form, such as sums of random
/// floats, where packed keeps every value raw). XOR is tried only when
/// packed takes over a byte a sample, a cost heuristic: runs that pack
/// smaller have decimal values, where packed wins.
pub fn encode_run_for_block(run: &[Sample]) -> (Encoding, Vec<u8>) {
    let packed = encode_packed(run);
    match xor_if_smaller(run, packed.len()) {
        Some(xor) => (Encoding::Xor, xor),
        None => (Encoding::Packed, packed),
    }
}

/// `run` as an XOR chunk, if that is smaller than `packed_len` bytes (a
/// packed chunk of it, possibly sharing its timestamps). Tried only when
/// the packed chunk takes over a byte a sample, as
/// [`encode_run_for_block`] says: a constant beyond ±2^53 (every sample an
/// 8-byte exception in a packed chunk) is several times smaller as XOR even
/// with its own timestamps.
pub fn xor_if_smaller(run: &[Sample], packed_len: usize) -> Option<Vec<u8>> {
    if packed_len <= run.len() {
        return None;
    }
    let mut xor = XorAppender::new();
    for s in run {
        xor.append(s.t, s.v);
    }
    let xor = xor.finish();
    (xor.len() < packed_len).then(|| xor.into_vec())
}

/// A full head chunk as the head keeps it: `xor` (a chunk the head's
/// appender finished) packed (`docs/format/chunks-packed.md`, timestamps
/// of its own, never shared) when that is smaller, else the XOR bytes as
/// they are. The head appends to XOR, the only encoding that takes one
/// sample at a time, but holds a chunk packed once it is full: on scrape
/// data packed takes a fraction of XOR's bytes (decimal values,
/// timestamps on a grid), and full chunks are most of what the head holds.
pub fn pack_full(xor: Vec<u8>) -> (Encoding, Vec<u8>) {
    let Ok(samples) = decode(Encoding::Xor, &xor) else {
        return (Encoding::Xor, xor);
    };
    if samples.is_empty() || samples.len() > MAX_PACKED_SAMPLES {
        return (Encoding::Xor, xor);
    }
    let packed = encode_packed(&samples);
    if packed.len() < xor.len() {
        (Encoding::Packed, packed)
    } else {
        (Encoding::Xor, xor)
    }
}

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
    /// A packed chunk's field is missing or out of range.
    #[error("packed chunk malformed at byte {byte_offset}: {what}")]
    Malformed {
        /// Byte offset from the chunk start near the bad field.
        byte_offset: usize,
        /// Which field, and what is wrong with it.
        what: &'static str,
    },
    /// A histogram chunk's field is missing or out of range.
    #[error("histogram chunk sample {sample} at bit {bit_offset}: {what}")]
    Histogram {
        /// Index of the sample being decoded.
        sample: usize,
        /// Bit offset from the chunk start where that sample begins.
        bit_offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A histogram chunk was read as float samples.
    #[error("chunk encoding {encoding} holds histograms, not float samples")]
    NotFloatSamples {
        /// The encoding byte.
        encoding: u8,
    },
    /// A float-sample chunk was read as histograms.
    #[error("chunk encoding {encoding} holds float samples, not histograms")]
    NotHistogramSamples {
        /// The encoding byte.
        encoding: u8,
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

/// Decodes a whole histogram chunk (either histogram encoding) as float
/// histograms, what queries read.
///
/// # Errors
/// Whatever the decoder reports for malformed bytes;
/// [`Error::NotHistogramSamples`] for a float-sample chunk.
pub fn decode_histograms(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<Vec<(i64, crate::model::FloatHistogram)>> {
    match encoding {
        Encoding::Histogram => {
            let mut it = HistogramIter::new(bytes);
            let out = it.by_ref().map(|(t, h)| (t, h.to_float())).collect();
            match it.err() {
                Some(e) => Err(e.clone()),
                None => Ok(out),
            }
        }
        Encoding::FloatHistogram => {
            let mut it = FloatHistogramIter::new(bytes);
            let out = it.by_ref().collect();
            match it.err() {
                Some(e) => Err(e.clone()),
                None => Ok(out),
            }
        }
        Encoding::Xor | Encoding::Packed => Err(Error::NotHistogramSamples {
            encoding: encoding.to_byte(),
        }),
    }
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
