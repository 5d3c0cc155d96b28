//! A small blocking HTTP/1.1 client for `http://` and `https://` URLs:
//! keep-alive connections, `Content-Length` and chunked response bodies,
//! time-outs on every read and write, basic auth from the URL's
//! `user:password@`. Enough for remote write and the query API on
//! loopback, without an async runtime in the load path. `https://` uses
//! rustls and trusts the CA certificates in `$SSL_CERT_FILE` only (as Go
//! and OpenSSL read it), so it measures a server with a test CA.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::error::{Error, Result};

/// `http(s)://[user:password@]host:port/path` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Whether the scheme is `https`.
    pub tls: bool,
    /// `Authorization` header value from the URL's user info.
    pub authorization: Option<String>,
    /// `host:port`, as sent in `Host`.
    pub authority: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an `http://` or `https://` URL; `user:password@` (taken
    /// as written, not percent-decoded) becomes basic auth.
    ///
    /// # Errors
    /// [`Error::Url`] when it is not `http(s)://[user:password@]host[:port][/path]`
    /// or does not resolve.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = || Error::Url {
            url: url.to_string(),
        };
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").ok_or_else(bad)?),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (authorization, authority) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                use base64::Engine as _;
                if !userinfo.contains(':') {
                    return Err(bad());
                }
                let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
                (Some(format!("Basic {encoded}")), host)
            }
            None => (None, authority),
        };
        if authority.is_empty() {
            return Err(bad());
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else if tls {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(bad)?;
        Ok(Self {
            tls,
            authorization,
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

/// A connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The TLS client configuration: rustls with ring, trusting the
/// certificates in `$SSL_CERT_FILE`; built once per process.
fn tls_client_config() -> std::io::Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<std::result::Result<Arc<rustls::ClientConfig>, String>> =
        OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let path = std::env::var_os("SSL_CERT_FILE")
                .ok_or("https:// needs the CA certificates in $SSL_CERT_FILE")?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&path).map_err(|e| e.to_string())? {
                roots
                    .add(c.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            // ring: see server/tls.rs.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(std::io::Error::other)
}

/// A keep-alive connection to one server, reconnecting when the server
/// closed it.
pub struct Client {
    authority: String,
    addr: SocketAddr,
    tls: bool,
    authorization: Option<String>,
    timeout: Duration,
    conn: Option<BufReader<Stream>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authority", &self.authority)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server of `url`; connects on first use.
    pub fn new(url: &Url, timeout: Duration) -> Self {
        Self {
            authority: url.authority.clone(),
            addr: url.addr,
            tls: url.tls,
            authorization: url.authorization.clone(),
            timeout,
            conn: None,
        }
    }

    fn connect(&self) -> Result<BufReader<Stream>> {
        let io = |source| Error::Io {
            addr: self.addr,
            source,
        };
        let s = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(io)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        if !self.tls {
            return Ok(BufReader::new(Stream::Plain(s)));
        }
        let host = self
            .authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let conn = rustls::ClientConnection::new(tls_client_config().map_err(io)?, name)
            .map_err(|e| io(std::io::Error::other(e)))?;
        Ok(BufReader::new(Stream::Tls(Box::new(
            rustls::StreamOwned::new(conn, s),
        ))))
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
        if let Some(a) = &self.authorization {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = conn.get_mut();
        s.write_all(head.as_bytes()).map_err(io)?;
        s.write_all(body).map_err(io)?;
        s.flush().map_err(io)?;

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
        assert!(!u.tls && u.authorization.is_none());
        let u = Url::parse("https://agent:pw@127.0.0.1:9201/api/v1/write").unwrap();
        assert!(u.tls);
        assert_eq!(u.authority, "127.0.0.1:9201");
        assert_eq!(u.authorization.as_deref(), Some("Basic YWdlbnQ6cHc="));
        assert_eq!(Url::parse("https://127.0.0.1/").unwrap().addr.port(), 443);
        for bad in [
            "ftp://x/",
            "127.0.0.1:1/",
            "http:///x",
            "http://u@h:1/",
            "https://u:p@/x",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encode_component_escapes_reserved() {
        assert_eq!(encode_component("a{b=\"c\"} 1"), "a%7Bb%3D%22c%22%7D%201");
    }
}
