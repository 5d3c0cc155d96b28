//! `loadgen::Error`: one variant per cause, carrying the facts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the load generator and the comparison.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not an `http(s)://[user:password@]host[:port][/path]` URL, or the
    /// host does not resolve.
    #[error("invalid URL {url:?}: expected http(s)://[user:password@]host[:port][/path]")]
    Url {
        /// The URL given.
        url: String,
    },
    /// Connecting, writing or reading failed.
    #[error("HTTP to {addr}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server's answer is not HTTP as expected.
    #[error("malformed HTTP response from {addr}: {what}")]
    BadResponse {
        /// The server.
        addr: SocketAddr,
        /// What was wrong.
        what: &'static str,
    },
    /// A file or directory could not be read or written.
    #[error("{what} {path}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A captured scrape is not the Prometheus text format.
    #[error("{path}:{line}: {reason}")]
    Exposition {
        /// The capture file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The replay directory holds no capture.
    #[error("no captured scrape (*.prom) in {dir}")]
    NoCaptures {
        /// The directory.
        dir: PathBuf,
    },
    /// A server binary could not be started.
    #[error("start {bin}")]
    Spawn {
        /// The binary.
        bin: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A server did not become ready in time.
    #[error("{system} not ready within {within:?}")]
    NotReady {
        /// Which server.
        system: String,
        /// How long it was given.
        within: Duration,
    },
    /// SIGKILL could not be sent to a server, or its exit not awaited.
    #[error("kill -9 {system}")]
    Kill {
        /// Which server.
        system: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A server exited when it should be running.
    #[error("{system} exited: {status}")]
    Exited {
        /// Which server.
        system: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// An API call answered other than expected.
    #[error("{system} {path}: status {status}: {body}")]
    Api {
        /// Which server.
        system: String,
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
