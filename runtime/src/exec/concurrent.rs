//! `concurrent.futures`' vocabulary over [`AsyncResult`]s, from either pool: `wait` for the
//! first, the first failing or all of several results, and `as_completed` to take them in the
//! order they finish.
//!
//! ```no_run
//! use multiproc::concurrent::{as_completed, wait, ReturnWhen};
//! use multiproc::prelude::*;
//!
//! #[pool_task]
//! fn slow_square(x: u64) -> u64 {
//!     std::thread::sleep(std::time::Duration::from_millis(10 * (5 - x)));
//!     x * x
//! }
//!
//! #[multiproc::main]
//! fn main() -> multiproc::Result<()> {
//!     let pool = Pool::new(4)?;
//!     let results = (0..5u64)
//!         .map(|x| pool.apply_async(slow_square, (x,)))
//!         .collect::<multiproc::Result<Vec<_>>>()?;
//!     let (done, not_done) = wait(results, ReturnWhen::FirstCompleted, None);
//!     assert!(!done.is_empty());
//!     for r in as_completed(done.into_iter().chain(not_done)) {
//!         println!("{}", r.get()?);
//!     }
//!     Ok(())
//! }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use super::result::AsyncResult;
use crate::error::{Error, Result};
use crate::sys::wait::deadline_after;

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
/// Used in [the module's example](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any result is in.
    FirstCompleted,
    /// As soon as any result is an error, or when all are in.
    FirstException,
    /// When all are in.
    AllCompleted,
}

/// Wakes a thread parked in [`wait`] or [`AsCompleted`].
struct Unpark {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// A waker for this thread, and the flag it sets.
fn this_thread() -> (Arc<Unpark>, Waker) {
    let u = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    (u.clone(), Waker::from(u))
}

/// Sleeps until woken or `deadline`; false if the deadline passed.
fn park(u: &Unpark, deadline: Option<Instant>) -> bool {
    while !u.woken.swap(false, Ordering::AcqRel) {
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::park_timeout(left);
            }
        }
    }
    true
}

/// Waits until `return_when` holds or `timeout` passes (`None`: no limit), then splits the
/// results into those done and those not (Python's `wait`). Nothing is taken: each result is
/// still there to `get`.
///
/// ```no_run
/// use multiproc::concurrent::{wait, ReturnWhen};
/// use multiproc::prelude::*;
/// use std::time::Duration;
///
/// #[pool_task]
/// fn check(x: u32) -> u32 {
///     assert!(x != 3, "3 is bad");
///     x
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     let rs = (0..6).map(|x| pool.apply_async(check, (x,))).collect::<multiproc::Result<Vec<_>>>()?;
///     // Back as soon as one fails (or all succeed), at most 10 s from now.
///     let (done, pending) = wait(rs, ReturnWhen::FirstException, Some(Duration::from_secs(10)));
///     let failed = done.iter().filter(|r| matches!(r.successful(), Ok(false))).count();
///     println!("{} done ({failed} failed), {} still running", done.len(), pending.len());
///     Ok(())
/// }
/// ```
pub fn wait<T>(
    results: impl IntoIterator<Item = AsyncResult<T>>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<AsyncResult<T>>, Vec<AsyncResult<T>>) {
    let results: Vec<AsyncResult<T>> = results.into_iter().collect();
    let deadline = timeout.and_then(deadline_after);
    let (u, waker) = this_thread();
    loop {
        // Register on every result, then look: one landing in between wakes this thread.
        let done: Vec<bool> = results.iter().map(|r| r.register(&waker)).collect();
        let met = match return_when {
            ReturnWhen::FirstCompleted => done.iter().any(|&d| d),
            ReturnWhen::AllCompleted => done.iter().all(|&d| d),
            ReturnWhen::FirstException => {
                done.iter().all(|&d| d)
                    || results
                        .iter()
                        .zip(&done)
                        .any(|(r, &d)| d && matches!(r.successful(), Ok(false)))
            }
        };
        if met || !park(&u, deadline) {
            return results.into_iter().partition(AsyncResult::done);
        }
    }
}

/// Results in the order they complete (Python's `as_completed`): an iterator that blocks for
/// the next one; with the `futures` feature, [`into_stream`](AsCompleted::into_stream) gives
/// a `Stream` of them. For Python's overall
/// `timeout`, use [`next_timeout`](AsCompleted::next_timeout) with what is left of it.
/// Example: [the module's](self).
pub fn as_completed<T>(results: impl IntoIterator<Item = AsyncResult<T>>) -> AsCompleted<T> {
    AsCompleted {
        pending: results.into_iter().collect(),
    }
}

/// See [`as_completed`] and [the module's example](self).
#[derive(Debug)]
pub struct AsCompleted<T> {
    pending: Vec<AsyncResult<T>>,
}

impl<T> AsCompleted<T> {
    /// The first done result, taken out of `pending`, with `waker` registered on all.
    fn take_done(&mut self, waker: &Waker) -> Option<AsyncResult<T>> {
        let at = self.pending.iter().position(|r| r.register(waker))?;
        Some(self.pending.remove(at))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Option<AsyncResult<T>>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let (u, waker) = this_thread();
        loop {
            if let Some(r) = self.take_done(&waker) {
                return Ok(Some(r));
            }
            if !park(&u, deadline) {
                return Err(Error::Timeout);
            }
        }
    }

    /// The next result to complete, waiting at most `timeout`: `Err(Timeout)` if none did
    /// by then (the iteration goes on), `Ok(None)` once all have been yielded.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<AsyncResult<T>>> {
        self.next_until(deadline_after(timeout))
    }

    /// The results not yielded yet.
    pub fn into_remaining(self) -> Vec<AsyncResult<T>> {
        self.pending
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = AsyncResult<T>;

    fn next(&mut self) -> Option<AsyncResult<T>> {
        // Without a deadline the wait cannot time out.
        self.next_until(None).ok().flatten()
    }
}

/// [`AsCompleted`] as a `Stream` (the `futures` feature): see
/// [`AsCompleted::into_stream`]. Example: [the module's](self) (the same results, iterated).
#[cfg(feature = "futures")]
#[derive(Debug)]
pub struct AsCompletedStream<T>(AsCompleted<T>);

#[cfg(feature = "futures")]
impl<T> Unpin for AsCompletedStream<T> {}

#[cfg(feature = "futures")]
impl<T> AsCompleted<T> {
    /// The results as a `Stream` of them in completion order, for async code.
    pub fn into_stream(self) -> AsCompletedStream<T> {
        AsCompletedStream(self)
    }
}

#[cfg(feature = "futures")]
impl<T> futures_core::Stream for AsCompletedStream<T> {
    type Item = AsyncResult<T>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<AsyncResult<T>>> {
        let this = &mut self.get_mut().0;
        if this.pending.is_empty() {
            return std::task::Poll::Ready(None);
        }
        match this.take_done(cx.waker()) {
            Some(r) => std::task::Poll::Ready(Some(r)),
            None => std::task::Poll::Pending,
        }
    }
}
