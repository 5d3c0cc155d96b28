//! Why a block file is damaged, typed like the WAL's `CorruptionReason`:
//! [`Corruption`] says what was wrong, [`Part`] which structure of which
//! file it was found in. `BlockError::Corrupt` (and the tombstones file's
//! error) carry one, with the file and byte offset beside it.
//!
//! Owns only the vocabulary of damage; the checks themselves live with the
//! decoders (`index.rs`, `chunks.rs`, `reader.rs`, `meta.rs`,
//! `storage/tombstones.rs`).

use std::fmt;

use crate::model::LabelError;
use crate::storage::chunk;
use crate::storage::encoding::DecodeError;

/// A section of the block index file (`docs/format/index.md`), in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSection {
    /// The symbol table.
    Symbols,
    /// The series entries.
    Series,
    /// The offset of each series entry.
    SeriesOffsets,
    /// The postings lists.
    Postings,
    /// The postings offset table's label names.
    LabelNames,
    /// The postings offset table's label values.
    LabelValues,
}

impl IndexSection {
    /// Every section, in file and TOC order.
    pub const ALL: [IndexSection; 6] = [
        IndexSection::Symbols,
        IndexSection::Series,
        IndexSection::SeriesOffsets,
        IndexSection::Postings,
        IndexSection::LabelNames,
        IndexSection::LabelValues,
    ];

    /// The section's name as the format documentation spells it.
    pub fn name(self) -> &'static str {
        match self {
            IndexSection::Symbols => "symbols",
            IndexSection::Series => "series",
            IndexSection::SeriesOffsets => "series offsets",
            IndexSection::Postings => "postings",
            IndexSection::LabelNames => "label names",
            IndexSection::LabelValues => "label values",
        }
    }
}

/// Where in a block file the damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The file header (magic, version, padding), or the file as a whole.
    Header,
    /// The index's table of contents.
    Toc,
    /// An index section as a whole.
    Section(IndexSection),
    /// Symbol number `n` of the symbol table.
    Symbol(u64),
    /// An entry of the label names table.
    LabelName,
    /// An entry of the label values table.
    LabelValue,
    /// A postings list.
    Postings,
    /// The index entry of block series `id`.
    Series(u64),
    /// A chunk's frame in a chunk segment.
    Chunk,
    /// The set of chunk segment files.
    Segments,
    /// `meta.json`.
    Meta,
    /// An entry of a tombstones file.
    Tombstone,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Header => f.write_str("header"),
            Part::Toc => f.write_str("TOC"),
            Part::Section(s) => write!(f, "{} section", s.name()),
            Part::Symbol(n) => write!(f, "symbol {n}"),
            Part::LabelName => f.write_str("label name entry"),
            Part::LabelValue => f.write_str("label value entry"),
            Part::Postings => f.write_str("postings list"),
            Part::Series(id) => write!(f, "series {id}"),
            Part::Chunk => f.write_str("chunk"),
            Part::Segments => f.write_str("chunk segments"),
            Part::Meta => f.write_str("meta.json"),
            Part::Tombstone => f.write_str("tombstone entry"),
        }
    }
}

/// What was wrong with a block file.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// The file is shorter than its fixed parts.
    #[error("file of {len} bytes is too short")]
    TooShort {
        /// The file's length.
        len: u64,
    },
    /// The file does not start with its format's magic number.
    #[error("bad magic {got:#010x}")]
    BadMagic {
        /// The first four bytes, big endian.
        got: u32,
    },
    /// A file whose version byte is none this code knows, where the format
    /// treats that as damage (the tombstones file: a block's only mutable
    /// file, rewritten by this same code).
    #[error("unknown format version {version}")]
    UnknownVersion {
        /// The version byte.
        version: u8,
    },
    /// Header bytes that must be zero are not.
    #[error("non-zero header padding")]
    NonZeroPadding,
    /// A CRC32 does not match the bytes it covers.
    #[error("{part} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// What the CRC covers.
        part: Part,
        /// The CRC in the file.
        stored: u32,
        /// The CRC of the bytes read.
        computed: u32,
    },
    /// A varint or fixed-size field runs past the end of its structure.
    #[error("{part} cut short: {source}")]
    Truncated {
        /// The structure being read.
        part: Part,
        /// Where the read failed.
        #[source]
        source: DecodeError,
    },
    /// A structure lies (partly) outside the file or section holding it.
    #[error("{part} out of bounds")]
    OutOfBounds {
        /// The misplaced structure.
        part: Part,
    },
    /// A fixed-size-entry structure's size is not a whole number of
    /// entries, or exceeds what the format can address.
    #[error("{part} has an invalid size of {size} bytes")]
    BadSize {
        /// The structure.
        part: Part,
        /// Its size.
        size: u64,
    },
    /// A count (of symbols, labels, chunks, postings) the rest of the
    /// structure cannot hold.
    #[error("{part}: count {count} out of range")]
    CountOutOfRange {
        /// The structure holding the count.
        part: Part,
        /// The count.
        count: u64,
    },
    /// A reference (symbol, series id, offset, entry index) past what exists.
    #[error("{part}: reference {value} out of range")]
    RefOutOfRange {
        /// The structure holding the reference.
        part: Part,
        /// The reference.
        value: u64,
    },
    /// Entries that must be strictly ascending are not.
    #[error("{part} out of order")]
    OutOfOrder {
        /// The first entry out of order.
        part: Part,
    },
    /// Entries that must tile a range leave a gap or an overlap.
    #[error("{part} not contiguous")]
    NotContiguous {
        /// The entry that breaks the tiling.
        part: Part,
    },
    /// A time range whose end overflows or precedes its start.
    #[error("{part}: time range overflows")]
    TimeOverflow {
        /// The structure holding the range.
        part: Part,
    },
    /// An entry that must not be empty is.
    #[error("{part} is empty")]
    Empty {
        /// The entry.
        part: Part,
    },
    /// A symbol is not UTF-8.
    #[error("{part} is not UTF-8")]
    NotUtf8 {
        /// The symbol.
        part: Part,
    },
    /// Bytes follow the last entry of a structure.
    #[error("{bytes} bytes after the last {part}")]
    TrailingBytes {
        /// The structure's last entry kind.
        part: Part,
        /// How many bytes follow.
        bytes: u64,
    },
    /// A chunk's framed length differs from the index's.
    #[error("chunk length {framed}, the index says {indexed}")]
    ChunkLengthMismatch {
        /// Length in the chunk's frame.
        framed: u64,
        /// Length in the index entry.
        indexed: u64,
    },
    /// A chunk whose frame and CRC are good does not decode.
    #[error("chunk does not decode: {0}")]
    ChunkUndecodable(#[source] chunk::Error),
    /// A series entry's labels are not a valid label set.
    #[error("series {series}: invalid labels: {source}")]
    InvalidLabels {
        /// The block series id.
        series: u64,
        /// Why the labels are invalid.
        #[source]
        source: LabelError,
    },
    /// `meta.json` is not the JSON the format describes.
    #[error("invalid meta.json: {0}")]
    InvalidMeta(#[source] serde_json::Error),
    /// A chunk segment file the numbering or a chunk ref needs is absent.
    #[error("chunk segment {segment} is missing")]
    MissingSegment {
        /// The segment's number.
        segment: u32,
    },
    /// A file in the chunks directory that is not a segment.
    #[error("unexpected file in the chunks directory")]
    UnexpectedFile,
    /// An index entry names a chunk that would end past its segment (of a
    /// block in object storage, whose segments are not opened).
    #[error("chunk {chunk} lies outside its segment of {segment_bytes} bytes")]
    ChunkOutOfSegment {
        /// The chunk's reference (`segment@offset`).
        chunk: String,
        /// The segment's size.
        segment_bytes: u64,
    },
}

impl Corruption {
    /// A short stable name for counting and logs (`bad_magic`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Corruption::TooShort { .. } => "too_short",
            Corruption::BadMagic { .. } => "bad_magic",
            Corruption::UnknownVersion { .. } => "unknown_version",
            Corruption::NonZeroPadding => "non_zero_padding",
            Corruption::ChecksumMismatch { .. } => "checksum_mismatch",
            Corruption::Truncated { .. } => "truncated",
            Corruption::OutOfBounds { .. } => "out_of_bounds",
            Corruption::BadSize { .. } => "bad_size",
            Corruption::CountOutOfRange { .. } => "count_out_of_range",
            Corruption::RefOutOfRange { .. } => "ref_out_of_range",
            Corruption::OutOfOrder { .. } => "out_of_order",
            Corruption::NotContiguous { .. } => "not_contiguous",
            Corruption::TimeOverflow { .. } => "time_overflow",
            Corruption::Empty { .. } => "empty",
            Corruption::NotUtf8 { .. } => "not_utf8",
            Corruption::TrailingBytes { .. } => "trailing_bytes",
            Corruption::ChunkLengthMismatch { .. } => "chunk_length_mismatch",
            Corruption::ChunkUndecodable(_) => "chunk_undecodable",
            Corruption::InvalidLabels { .. } => "invalid_labels",
            Corruption::InvalidMeta(_) => "invalid_meta",
            Corruption::MissingSegment { .. } => "missing_segment",
            Corruption::UnexpectedFile => "unexpected_file",
            Corruption::ChunkOutOfSegment { .. } => "chunk_out_of_segment",
        }
    }
}
