//! The one place where errors become HTTP statuses. Handlers return
//! [`ApiError`]; nothing else in the crate picks a status code.
//!
//! Query-API errors answer Prometheus's JSON envelope with its `errorType`
//! and status (`web/api/v1/api.go` `respondError`); remote-write errors are
//! plain text, as Prometheus's receiver answers.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::response;
use crate::ingest;
use crate::promql::QueryError;

/// Prometheus's API error kinds (`errorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Malformed request: 400.
    BadData,
    /// The query failed while running: 422.
    Execution,
    /// The client went away: 499.
    Canceled,
    /// The query ran out of time: 503.
    Timeout,
    /// A bug or an unexpected failure: 500.
    Internal,
    /// No such endpoint: 404.
    NotFound,
    /// The feature is off or missing: 503.
    Unavailable,
}

impl ErrorType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Canceled => "canceled",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
            ErrorType::Unavailable => "unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            // nginx's "client closed request", as Prometheus.
            ErrorType::Canceled => StatusCode::from_u16(499).expect("499 is a valid status code"),
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// Why a remote-read request (`/api/v1/read`) failed. Plain text, as
/// Prometheus's read handler answers.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The compressed body is over the read body limit (413).
    #[error("read request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The declared decompressed size is over the limit (400).
    #[error("decompressed read request of {size} bytes exceeds the limit of {limit} bytes (set by --storage.remote.read-max-decompressed-bytes)")]
    DecompressedTooLarge {
        /// Declared decompressed size.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Not a snappy block (400).
    #[error("body is not valid snappy (block format): {0}")]
    Snappy(String),
    /// Not a `prometheus.ReadRequest` (400).
    #[error("body is not a valid prometheus.ReadRequest protobuf: {0}")]
    Protobuf(String),
    /// No accepted response type is one we implement (400).
    #[error("none of the accepted response types {0:?} is supported")]
    UnsupportedResponseTypes(Vec<i32>),
    /// A matcher that does not parse (400).
    #[error("query {index}: {reason}")]
    BadMatcher {
        /// Index of the query in the request.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A query without a matcher that selects anything (400): it would
    /// read every series.
    #[error("query {index} has no matcher that selects anything: at least one matcher must not match the empty string")]
    NoMatchers {
        /// Index of the query in the request.
        index: usize,
    },
    /// The read would return more samples than allowed (400, Prometheus's
    /// wording).
    #[error(
        "exceeded sample limit ({limit}); the limit is set by --storage.remote.read-sample-limit"
    )]
    SampleLimit {
        /// The limit.
        limit: usize,
    },
    /// The read ran longer than the query time-out (503).
    #[error("remote read timed out after {0:?}; the limit is set by --query.timeout")]
    Timeout(std::time::Duration),
    /// The read task panicked or was cancelled (500).
    #[error("remote read task failed: {0}")]
    TaskFailed(String),
    /// Encoding the answer failed (500).
    #[error("compressing the response: {0}")]
    Encode(String),
    /// Stored data could not be read (a damaged block, a bucket that does
    /// not answer): remote read has no warnings, so a partial answer is an
    /// error (500).
    #[error("remote read could not read all stored data: {0}")]
    Incomplete(String),
}

impl ReadError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ReadError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ReadError::DecompressedTooLarge { .. }
            | ReadError::Snappy(_)
            | ReadError::Protobuf(_)
            | ReadError::UnsupportedResponseTypes(_)
            | ReadError::BadMatcher { .. }
            | ReadError::NoMatchers { .. }
            | ReadError::SampleLimit { .. } => StatusCode::BAD_REQUEST,
            ReadError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ReadError::TaskFailed(_) | ReadError::Encode(_) | ReadError::Incomplete(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// An error on its way to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A remote-write request that failed as a whole.
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    /// Every remote-write slot stayed busy for the whole queue time
    /// (retryable: plain-text 503 with `Retry-After`).
    #[error("too many concurrent remote writes: {limit} in flight (--write.max-concurrency) and this one waited {}s for a turn (--write.max-queue-duration); retry later", waited.as_secs_f64())]
    TooManyWrites {
        /// The concurrency limit.
        limit: usize,
        /// How long the request waited.
        waited: std::time::Duration,
    },
    /// An OTLP request refused as a whole.
    #[error(transparent)]
    Otlp(#[from] crate::ingest::otlp::OtlpError),
    /// An OTLP body past `--max-write-body-bytes`.
    #[error("request body larger than {limit} bytes (--max-write-body-bytes)")]
    OtlpBodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A remote-read request that failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The server is starting (WAL replay) or shutting down.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A parameter that does not parse (`bad_data`).
    #[error("invalid parameter {name:?}: {reason}")]
    InvalidParam {
        /// The parameter, e.g. `time`, `match[]`.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The query does not parse or has the wrong type (`bad_data`).
    #[error("invalid parameter \"query\": {0}")]
    BadQuery(String),
    /// A range query's `end` is before its `start` (`bad_data`).
    #[error("end timestamp must not be before start time")]
    EndBeforeStart,
    /// A range query's step is zero or negative (`bad_data`).
    #[error(
        "zero or negative query resolution step widths are not accepted. Try a positive integer"
    )]
    NonPositiveStep,
    /// `/api/v1/series` without `match[]` (`bad_data`).
    #[error("no match[] parameter provided")]
    NoMatchParam,
    /// A label name that is empty or not UTF-8 (`bad_data`).
    #[error("invalid label name: {0:?}")]
    InvalidLabelName(String),
    /// A `status/tsdb` or metadata numeric parameter out of range (`bad_data`).
    #[error("{0}")]
    BadLimit(&'static str),
    /// A POST form larger than the form limit (`bad_data`).
    #[error("request body larger than {limit} bytes")]
    FormTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Evaluation failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The evaluation task panicked or was aborted (`internal`).
    #[error("query task failed: {0}")]
    TaskFailed(String),
    /// An unknown `/api/v1/*` path (`not_found`).
    #[error("unknown API endpoint {path:?}")]
    UnknownEndpoint {
        /// The request path.
        path: String,
    },
    /// Missing or wrong credentials (401 with `WWW-Authenticate: Basic`).
    /// Never says which of user or password was wrong.
    #[error("Unauthorized")]
    Unauthorized,
    /// A valid user without the role the endpoint needs (403).
    #[error("Forbidden: this endpoint needs role {needed}")]
    Forbidden {
        /// The role needed.
        needed: crate::web_config::Role,
    },
    /// A write to the store role, which serves the bucket read only (405,
    /// plain text).
    #[error("this is a read-only store or query role (tidemark store serves the blocks in object storage, tidemark query other nodes): send writes to an ingesting tidemark node")]
    ReadOnly,
    /// A call the query role does not fan out (`unavailable`).
    #[error("not served by the query role (it holds no data): ask a node or store directly")]
    NoLocalStorage,
    /// An admin endpoint while `--enable-admin-api` is off (`unavailable`),
    /// with Prometheus's message.
    #[error("admin APIs disabled")]
    AdminDisabled,
    /// A storage operation behind an admin endpoint failed (`internal`),
    /// with Prometheus's wording for the operation.
    #[error("{op}: {reason}")]
    AdminFailed {
        /// What was being done, e.g. `create snapshot`.
        op: &'static str,
        /// The storage error.
        reason: String,
    },
}

impl ApiError {
    /// The Prometheus error kind, or `None` for the plain-text errors of
    /// remote write and the readiness gate.
    pub fn error_type(&self) -> Option<ErrorType> {
        Some(match self {
            ApiError::Ingest(_)
            | ApiError::Otlp(_)
            | ApiError::OtlpBodyTooLarge { .. }
            | ApiError::Read(_)
            | ApiError::Unavailable(_)
            | ApiError::TooManyWrites { .. }
            | ApiError::Unauthorized
            | ApiError::ReadOnly
            | ApiError::Forbidden { .. } => return None,
            ApiError::InvalidParam { .. }
            | ApiError::BadQuery(_)
            | ApiError::EndBeforeStart
            | ApiError::NonPositiveStep
            | ApiError::NoMatchParam
            | ApiError::InvalidLabelName(_)
            | ApiError::BadLimit(_)
            | ApiError::FormTooLarge { .. } => ErrorType::BadData,
            ApiError::Query(q) => match q {
                QueryError::Parse(_) | QueryError::TooManyPoints => ErrorType::BadData,
                QueryError::Exec(_) | QueryError::TooManySamples => ErrorType::Execution,
                QueryError::Timeout(_) => ErrorType::Timeout,
                QueryError::Canceled(_) => ErrorType::Canceled,
                QueryError::Unavailable(_) => ErrorType::Unavailable,
            },
            ApiError::TaskFailed(_) | ApiError::AdminFailed { .. } => ErrorType::Internal,
            ApiError::UnknownEndpoint { .. } => ErrorType::NotFound,
            ApiError::AdminDisabled | ApiError::NoLocalStorage => ErrorType::Unavailable,
        })
    }

    /// The status code for this error.
    pub fn status(&self) -> StatusCode {
        use ingest::Error as I;
        match self {
            ApiError::Ingest(e) => match e {
                I::UnsupportedContentType { .. } | I::UnsupportedEncoding { .. } => {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                I::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                // Never acceptable as sent: 400, which senders do not retry.
                I::DecompressedTooLarge { .. }
                | I::TooMany { .. }
                | I::Snappy { .. }
                | I::Protobuf { .. } => StatusCode::BAD_REQUEST,
                // Retryable: the sender backs off and resends.
                I::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Otlp(e) => {
                use crate::ingest::otlp::OtlpError as O;
                match e {
                    O::UnsupportedContentType(_) | O::UnsupportedEncoding(_) => {
                        StatusCode::UNSUPPORTED_MEDIA_TYPE
                    }
                    O::DecompressedTooLarge { .. }
                    | O::Gzip(_)
                    | O::Decode { .. }
                    | O::TooMany { .. }
                    | O::JsonTooLarge { .. } => StatusCode::BAD_REQUEST,
                    // Retryable (OTLP/HTTP: 503 with Retry-After).
                    O::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
            ApiError::OtlpBodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Read(e) => e.status(),
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::ReadOnly => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::TooManyWrites { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            other => other
                .error_type()
                .map_or(StatusCode::INTERNAL_SERVER_ERROR, ErrorType::status),
        }
    }
}

/// Query-API errors are Prometheus's JSON envelope; remote-write and
/// readiness errors are plain text.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        let mut headers = HeaderMap::new();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert("Retry-After", HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            // exporter-toolkit's header: browsers and curl then ask for
            // credentials.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        }
        match self.error_type() {
            None => (status, headers, format!("{self}\n")).into_response(),
            Some(kind) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                let body = response::error_body(kind.as_str(), &self.to_string());
                (status, headers, body).into_response()
            }
        }
    }
}
