//! Runs query work off the async workers, on threads with a stack of
//! [`QUERY_THREAD_STACK`] (tokio's blocking pool has a small default
//! stack, too small for deep but allowed ASTs in a debug build), with
//! panics caught so a bug answers an error instead of dropping the
//! connection.
//!
//! The threads are reused: a thread that finished a call waits
//! [`IDLE_EXIT`] for the next before it exits, as tokio's blocking pool
//! does. Starting a thread with a 64 MiB stack for every call (mmap,
//! clone, munmap and the scheduler's switches) was most of a small
//! query's time: 0.34 ms for a one-series instant query, where
//! VictoriaMetrics answers in 0.1-0.2 ms. There are as many threads as
//! calls running at once (the API's concurrency limit bounds them).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::Duration;

use parking_lot::Mutex;

use crate::promql::guard::QUERY_THREAD_STACK;

/// How long an idle query thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// A call's work; what it returns delivers the result, which the thread
/// runs after putting itself back on the idle list (so the caller, woken
/// by the result, finds it there for its next call).
type Job = Box<dyn FnOnce() -> Deliver + Send>;
type Deliver = Box<dyn FnOnce() + Send>;

/// Query threads: the idle ones (each one's id and the sender of its job
/// channel) and how many were started.
struct Pool {
    idle: Mutex<Vec<(u64, Sender<Job>)>>,
    started: AtomicU64,
}

impl Pool {
    const fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
        }
    }

    /// Hands `job` to an idle thread, or starts one.
    fn submit(&'static self, mut job: Job) -> Result<(), WorkerError> {
        loop {
            let Some((_, tx)) = self.idle.lock().pop() else {
                return self.start_thread(job);
            };
            match tx.send(job) {
                Ok(()) => return Ok(()),
                // That thread has exited: try the next.
                Err(back) => job = back.0,
            }
        }
    }

    fn start_thread(&'static self, first: Job) -> Result<(), WorkerError> {
        let id = self.started.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("tidemark-query".into())
            .stack_size(QUERY_THREAD_STACK)
            .spawn(move || {
                let mut job = first;
                loop {
                    let deliver = job();
                    self.idle.lock().push((id, tx.clone()));
                    deliver();
                    job = match rx.recv_timeout(IDLE_EXIT) {
                        Ok(next) => next,
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {
                            let mut idle = self.idle.lock();
                            if let Some(at) = idle.iter().position(|(i, _)| *i == id) {
                                idle.remove(at);
                                return;
                            }
                            drop(idle);
                            // A caller took this thread off the idle list
                            // just now: its job is on the way.
                            match rx.recv() {
                                Ok(next) => next,
                                Err(_) => return,
                            }
                        }
                    };
                }
            })
            .map(drop)
            .map_err(|e| WorkerError::Spawn(e.to_string()))
    }
}

/// The process's query threads.
static POOL: Pool = Pool::new();

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

/// Runs `f` on a query thread of [`QUERY_THREAD_STACK`] bytes (an idle
/// one, or a new one) and awaits its result without blocking the async
/// worker. A panic in `f` is caught and
/// returned as [`WorkerError::Panicked`]. If the returned future is
/// dropped, `f` still runs to completion (it should poll a cancel flag).
///
/// # Errors
/// [`WorkerError`].
pub async fn run_on_query_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    run_on(&POOL, f).await
}

async fn run_on<T: Send + 'static>(
    pool: &'static Pool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.submit(Box::new(move || {
        let r = caught(f);
        Box::new(move || {
            let _ = tx.send(r);
        })
    }))?;
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(WorkerError::Panicked(msg)),
        Err(_) => Err(WorkerError::Panicked("no result".into())),
    }
}

/// Runs `f` on the calling thread with its panic caught, as
/// [`run_on_query_thread`] would on a query thread: for work known to be
/// short and shallow (the caller's judgement), which then skips the hop.
///
/// # Errors
/// [`WorkerError::Panicked`].
pub fn run_here<T>(f: impl FnOnce() -> T) -> Result<T, WorkerError> {
    caught(f).map_err(WorkerError::Panicked)
}

/// `f`'s value, or the message of its panic.
fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_are_caught_and_deep_recursion_fits() {
        assert_eq!(run_on_query_thread(|| 7).await, Ok(7));
        let e = run_on_query_thread(|| -> u8 { panic!("boom") }).await;
        assert_eq!(e, Err(WorkerError::Panicked("boom".into())));
        assert_eq!(run_here(|| 9), Ok(9));
        let e = run_here(|| -> u8 { panic!("here") });
        assert_eq!(e, Err(WorkerError::Panicked("here".into())));
        // The thread that caught the panic is still good for the next call.
        assert_eq!(run_on_query_thread(|| 8).await, Ok(8));
    }

    /// Calls one after another reuse one thread instead of starting one
    /// each; calls at once each get a thread of their own; every call runs
    /// on a query thread. (A pool of its own: other tests use the
    /// process's.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_are_reused_and_calls_at_once_run_in_parallel() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
        for k in 0..20 {
            assert_eq!(run_on(pool, move || k).await, Ok(k));
        }
        assert_eq!(
            pool.started.load(Ordering::Relaxed),
            1,
            "one thread for calls in turn"
        );
        // Four calls that wait for each other can only finish if each has
        // its own thread.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let calls = (0..4).map(|_| {
            let b = barrier.clone();
            run_on(pool, move || {
                b.wait();
                std::thread::current().name().map(str::to_string)
            })
        });
        let names = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures::future::join_all(calls),
        )
        .await
        .expect("calls at once each get a thread");
        for n in names {
            assert_eq!(n.unwrap().as_deref(), Some("tidemark-query"));
        }
        assert_eq!(pool.started.load(Ordering::Relaxed), 4);
    }
}
