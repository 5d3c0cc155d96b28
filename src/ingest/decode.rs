//! The byte-level half of remote write: which protocol version a request
//! speaks (from `Content-Type`, never by sniffing the body), snappy block
//! decompression under a size limit, and protobuf decoding.

use bytes::Bytes;
use prost::Message;

use crate::ingest::error::Error;
use crate::ingest::proto::{prometheus, write_v2};

/// The remote-write protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoVersion {
    /// 1.0: `prometheus.WriteRequest`.
    V1,
    /// 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

impl ProtoVersion {
    /// Short label for metrics (`"1.0"`, `"2.0"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProtoVersion::V1 => "1.0",
            ProtoVersion::V2 => "2.0",
        }
    }
}

/// A decoded request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Remote write 1.0.
    V1(prometheus::WriteRequest),
    /// Remote write 2.0.
    V2(write_v2::Request),
}

/// Chooses the protocol from `Content-Type`: absent or
/// `application/x-protobuf` → 1.0; `proto=prometheus.WriteRequest` → 1.0;
/// `proto=io.prometheus.write.v2.Request` → 2.0; anything else is refused.
///
/// # Errors
/// [`Error::UnsupportedContentType`].
pub fn version_from_content_type(content_type: Option<&str>) -> Result<ProtoVersion, Error> {
    let Some(ct) = content_type.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(ProtoVersion::V1);
    };
    let unsupported = || Error::UnsupportedContentType {
        content_type: ct.to_string(),
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(unsupported());
    }
    let mut version = ProtoVersion::V1;
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            return Err(unsupported());
        };
        if key.trim().eq_ignore_ascii_case("proto") {
            version = match value.trim().trim_matches('"') {
                "prometheus.WriteRequest" => ProtoVersion::V1,
                "io.prometheus.write.v2.Request" => ProtoVersion::V2,
                _ => return Err(unsupported()),
            };
        }
    }
    Ok(version)
}

/// Accepts an absent `Content-Encoding` or `snappy`, as Prometheus does
/// (the body is snappy either way).
///
/// # Errors
/// [`Error::UnsupportedEncoding`].
pub fn check_content_encoding(encoding: Option<&str>) -> Result<(), Error> {
    match encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(Error::UnsupportedEncoding {
            encoding: e.to_string(),
        }),
    }
}

/// Decompresses a snappy *block* (not framed) body, refusing before any
/// allocation when the declared size exceeds `max_decompressed`.
///
/// # Errors
/// [`Error::DecompressedTooLarge`] or [`Error::Snappy`].
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, Error> {
    let size = snap::raw::decompress_len(body).map_err(|e| Error::Snappy {
        reason: e.to_string(),
    })?;
    if size > max_decompressed {
        return Err(Error::DecompressedTooLarge {
            size,
            limit: max_decompressed,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Snappy {
            reason: e.to_string(),
        })
}

/// Decodes the protobuf message of `version`. String fields come out as
/// slices of `raw` (no copies).
///
/// # Errors
/// [`Error::Protobuf`].
pub fn decode(version: ProtoVersion, raw: Bytes) -> Result<Request, Error> {
    match version {
        ProtoVersion::V1 => prometheus::WriteRequest::decode(raw)
            .map(Request::V1)
            .map_err(|e| Error::Protobuf {
                message: "prometheus.WriteRequest",
                reason: e.to_string(),
            }),
        ProtoVersion::V2 => write_v2::Request::decode(raw)
            .map(Request::V2)
            .map_err(|e| Error::Protobuf {
                message: "io.prometheus.write.v2.Request",
                reason: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_table() {
        let cases: [(Option<&str>, Option<ProtoVersion>); 9] = [
            (None, Some(ProtoVersion::V1)),
            (Some(""), Some(ProtoVersion::V1)),
            (Some("application/x-protobuf"), Some(ProtoVersion::V1)),
            (
                Some("application/x-protobuf;proto=prometheus.WriteRequest"),
                Some(ProtoVersion::V1),
            ),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                Some(ProtoVersion::V2),
            ),
            (
                Some("application/x-protobuf; proto=io.prometheus.write.v2.Request"),
                Some(ProtoVersion::V2),
            ),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
                None,
            ),
            (Some("application/json"), None),
            (Some("application/x-protobuf;garbage"), None),
        ];
        for (ct, want) in cases {
            assert_eq!(version_from_content_type(ct).ok(), want, "{ct:?}");
        }
    }

    #[test]
    fn content_encoding_only_snappy() {
        assert!(check_content_encoding(None).is_ok());
        assert!(check_content_encoding(Some("snappy")).is_ok());
        assert!(matches!(
            check_content_encoding(Some("gzip")),
            Err(Error::UnsupportedEncoding { .. })
        ));
    }

    #[test]
    fn decompress_limits_and_errors() {
        let body = snap::raw::Encoder::new()
            .compress_vec(&[7u8; 1000])
            .unwrap();
        assert_eq!(decompress(&body, 1000).unwrap().len(), 1000);
        assert!(matches!(
            decompress(&body, 999),
            Err(Error::DecompressedTooLarge {
                size: 1000,
                limit: 999
            })
        ));
        assert!(matches!(
            decompress(b"\xff\xff\xff", 1000),
            Err(Error::Snappy { .. })
        ));
        // The framed format is refused: its stream identifier is not a block.
        assert!(decompress(b"\xff\x06\x00\x00sNaPpY", 1 << 20).is_err());
    }
}
