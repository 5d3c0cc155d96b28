//! Runs query work off the async workers: each call gets its own thread
//! with a stack of [`QUERY_THREAD_STACK`] (tokio's blocking pool has a
//! small default stack, too small for deep but allowed ASTs in a debug
//! build), with panics caught so a bug answers an error instead of
//! dropping the connection.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::promql::guard::QUERY_THREAD_STACK;

/// Why [`run_on_query_thread`] produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The OS refused a thread.
    #[error("could not start a query thread: {0}")]
    Spawn(String),
    /// The work panicked (a bug); the message is the panic's.
    #[error("query thread panicked: {0}")]
    Panicked(String),
}

/// Runs `f` on a new thread of [`QUERY_THREAD_STACK`] bytes and awaits its
/// result without blocking the async worker. A panic in `f` is caught and
/// returned as [`WorkerError::Panicked`]. If the returned future is
/// dropped, `f` still runs to completion (it should poll a cancel flag).
///
/// # Errors
/// [`WorkerError`].
pub async fn run_on_query_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tidemark-query".into())
        .stack_size(QUERY_THREAD_STACK)
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            });
            let _ = tx.send(r);
        })
        .map_err(|e| WorkerError::Spawn(e.to_string()))?;
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(WorkerError::Panicked(msg)),
        Err(_) => Err(WorkerError::Panicked("no result".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_are_caught_and_deep_recursion_fits() {
        assert_eq!(run_on_query_thread(|| 7).await, Ok(7));
        let e = run_on_query_thread(|| -> u8 { panic!("boom") }).await;
        assert_eq!(e, Err(WorkerError::Panicked("boom".into())));
    }
}
