//! Turns a panic inside a request handler into a 500 answer with the
//! panic's message and an error log line, so a bug costs one request, never
//! the connection or the process. Owns nothing else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

/// The answer to a request whose handler panicked: 500 with the panic's
/// message, logged as an error. A bug, never a client's fault, but never
/// a dropped connection either.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: request handler panicked: {message}\n"),
    )
        .into_response()
}

/// `router` with panics in its handlers answered by [`panic_response`].
pub(crate) fn with_panic_guard<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(CatchPanicLayer::custom(panic_response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    /// A handler that panics answers 500 with the panic's message instead
    /// of dropping the connection.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_its_message() {
        let app: Router = with_panic_guard(Router::new().route(
            "/boom",
            get(|| async {
                let v: Vec<u8> = Vec::new();
                // Indexing past the end, as a bug would.
                v[std::hint::black_box(3)].to_string()
            }),
        ));
        let resp = app
            .oneshot(
                Request::builder()
                    .uri("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("panicked") && text.contains("index out of bounds"),
            "{text}"
        );
    }
}
