//! A minimal blocking HTTP/1.0 client for loopback tests (HTTP/1.0 keeps
//! servers from answering with chunked encoding). Bounded by time-outs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends a request; returns the status code and body, or `None` when the
/// server cannot be reached.
pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    request_full(addr, method, path, headers, body).map(|r| (r.status, r.body))
}

/// A response with its headers (names lower-cased).
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// As [`request`], keeping the response headers.
pub(crate) fn request_full(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    })
}

/// GET returning the body as text.
pub(crate) fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    request(addr, "GET", path, &[], b"").map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
}

/// Encodes a query parameter value (`application/x-www-form-urlencoded`,
/// as every server under test decodes query strings).
pub(crate) fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of the sample named `name` (no labels) on `GET /metrics`.
pub(crate) fn metric(addr: &str, name: &str) -> Option<f64> {
    let (_, body) = get(addr, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One float sample to remote-write: label pairs, timestamp (ms), value.
pub(crate) type FloatPoint<'a> = (&'a [(&'a str, &'a str)], i64, f64);

/// Remote-writes (1.0) one float sample per `(labels, t, v)`; panics unless
/// the server answers 204.
pub(crate) fn remote_write_v1(addr: &str, samples: &[FloatPoint<'_>]) {
    let (status, resp) = remote_write_v1_status(addr, samples);
    assert_eq!(status, 204, "remote write: {resp}");
}

/// As [`remote_write_v1`], returning the status and body whatever they are.
pub(crate) fn remote_write_v1_status(addr: &str, samples: &[FloatPoint<'_>]) -> (u16, String) {
    use tidemark_proto::prometheus as v1;
    let label = |(n, v): &(&str, &str)| v1::Label {
        name: bytes::Bytes::copy_from_slice(n.as_bytes()),
        value: bytes::Bytes::copy_from_slice(v.as_bytes()),
    };
    let req = v1::WriteRequest {
        timeseries: samples
            .iter()
            .map(|(labels, t, v)| v1::TimeSeries {
                labels: labels.iter().map(label).collect(),
                samples: vec![v1::Sample {
                    value: *v,
                    timestamp: *t,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    remote_write_request_status(addr, &req)
}

/// POSTs a remote-write 1.0 request (samples, metadata or both) and
/// returns the status and body whatever they are.
pub(crate) fn remote_write_request_status(
    addr: &str,
    req: &tidemark_proto::prometheus::WriteRequest,
) -> (u16, String) {
    use prost::Message;
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    let (status, resp) = request(
        addr,
        "POST",
        "/api/v1/write",
        &[
            (
                "Content-Type",
                "application/x-protobuf;proto=prometheus.WriteRequest",
            ),
            ("Content-Encoding", "snappy"),
        ],
        &body,
    )
    .expect("remote write: server unreachable");
    (status, String::from_utf8_lossy(&resp).into_owned())
}
