//! A small blocking HTTP/1.1 client for `http://` URLs: keep-alive
//! connections, `Content-Length` and chunked response bodies, time-outs on
//! every read and write. Enough for remote write and the query API on
//! loopback, without an async runtime or a TLS stack in the load path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::error::{Error, Result};

/// `http://host:port/path` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, as sent in `Host`.
    pub authority: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an `http://` URL (no TLS, no user info).
    ///
    /// # Errors
    /// [`Error::Url`] when it is not `http://host[:port][/path]` or does not resolve.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = || Error::Url {
            url: url.to_string(),
        };
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(bad)?;
        Ok(Self {
            authority: authority.to_string(),
            addr,
            path: path.to_string(),
        })
    }

    /// `http://authority` + `path`.
    pub fn with_path(&self, path: &str) -> Self {
        Self {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `(method, path, headers, body)` of one request.
type RequestParts<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [u8]);

/// A keep-alive connection to one server, reconnecting when the server
/// closed it.
#[derive(Debug)]
pub struct Client {
    authority: String,
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client for the server of `url`; connects on first use.
    pub fn new(url: &Url, timeout: Duration) -> Self {
        Self {
            authority: url.authority.clone(),
            addr: url.addr,
            timeout,
            conn: None,
        }
    }

    fn connect(&self) -> Result<BufReader<TcpStream>> {
        let io = |source| Error::Io {
            addr: self.addr,
            source,
        };
        let s = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(io)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        Ok(BufReader::new(s))
    }

    /// Sends one request and reads the whole response. A request on a
    /// reused connection that fails before any response byte is retried
    /// once on a fresh connection (the server may have closed it idle).
    ///
    /// # Errors
    /// [`Error::Io`] on connection trouble, [`Error::BadResponse`] on a
    /// malformed response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let reused = self.conn.is_some();
        let req = (method, path, headers, body);
        match self.try_request(req) {
            Err(Error::Io { .. }) if reused => {
                self.conn = None;
                self.try_request(req)
            }
            r => r,
        }
    }

    /// One attempt of [`Client::request`] with `(method, path, headers, body)`.
    fn try_request(&mut self, (method, path, headers, body): RequestParts<'_>) -> Result<Response> {
        let addr = self.addr;
        let io = |source| Error::Io { addr, source };
        let bad = |what: &'static str| Error::BadResponse { addr, what };
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tidemark-loadgen/{}\r\nContent-Length: {}\r\n",
            self.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = conn.get_mut();
        s.write_all(head.as_bytes()).map_err(io)?;
        s.write_all(body).map_err(io)?;

        let mut line = String::new();
        if conn.read_line(&mut line).map_err(io)? == 0 {
            self.conn = None;
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(bad("no status line"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).map_err(io)? == 0 {
                return Err(bad("connection closed in headers"));
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v): &(String, String)| v.to_ascii_lowercase())
        };
        let close = find("connection").is_some_and(|v| v == "close");
        let mut out = Vec::new();
        if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                conn.read_line(&mut line).map_err(io)?;
                let size_text = line.trim().split(';').next().unwrap_or("");
                let size =
                    usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // Trailers, then the blank line.
                    loop {
                        line.clear();
                        if conn.read_line(&mut line).map_err(io)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = out.len();
                out.resize(start + size, 0);
                conn.read_exact(&mut out[start..]).map_err(io)?;
                line.clear();
                conn.read_line(&mut line).map_err(io)?;
            }
        } else if let Some(len) = find("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            out.resize(len, 0);
            conn.read_exact(&mut out).map_err(io)?;
        } else if status != 204 && status != 304 && method != "HEAD" {
            conn.read_to_end(&mut out).map_err(io)?;
            self.conn = None;
        }
        if close {
            self.conn = None;
        }
        Ok(Response {
            status,
            headers,
            body: out,
        })
    }

    /// `GET path`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn get(&mut self, path: &str) -> Result<Response> {
        self.request("GET", path, &[], b"")
    }
}

/// Percent-encodes `s` for a query string (RFC 3986 unreserved kept).
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parse_splits_authority_and_path() {
        let u = Url::parse("http://127.0.0.1:9201/api/v1/write").unwrap();
        assert_eq!(u.authority, "127.0.0.1:9201");
        assert_eq!(u.path, "/api/v1/write");
        assert_eq!(u.addr.port(), 9201);
        assert_eq!(Url::parse("http://127.0.0.1").unwrap().path, "/");
        for bad in ["https://x/", "127.0.0.1:1/", "http:///x", "http://u@h:1/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encode_component_escapes_reserved() {
        assert_eq!(encode_component("a{b=\"c\"} 1"), "a%7Bb%3D%22c%22%7D%201");
    }
}
