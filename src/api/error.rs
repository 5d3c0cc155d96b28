//! The one place where errors become HTTP statuses. Handlers return
//! [`ApiError`]; nothing else in the crate picks a status code.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::ingest;

/// An error on its way to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A remote-write request that failed as a whole.
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    /// The server is starting (WAL replay) or shutting down.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl ApiError {
    /// The status code for this error.
    pub fn status(&self) -> StatusCode {
        use ingest::Error as I;
        match self {
            ApiError::Ingest(e) => match e {
                I::UnsupportedContentType { .. } | I::UnsupportedEncoding { .. } => {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                I::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                I::DecompressedTooLarge { .. } | I::Snappy { .. } | I::Protobuf { .. } => {
                    StatusCode::BAD_REQUEST
                }
                // Retryable: the sender backs off and resends.
                I::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Remote-write errors are plain text, as Prometheus's receiver answers.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        let mut headers = HeaderMap::new();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert("Retry-After", axum::http::HeaderValue::from_static("1"));
        }
        (status, headers, format!("{self}\n")).into_response()
    }
}
