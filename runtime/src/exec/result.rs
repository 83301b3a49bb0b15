//! `AsyncResult`, the cell it reads, and the collector of a `map`'s chunks, shared by every
//! backend.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::sys::wait::{deadline_after, lock, poll_briefly_for, Waiters};
use std::time::{Duration, Instant};

use super::options::Callbacks;
use super::progress::Counter;
use crate::error::{Error, Result};

enum Slot<T> {
    Pending,
    Done(Result<T>),
    Taken,
}

/// Where a result lands; shared by the sink (writer) and the `AsyncResult` (reader).
pub(crate) struct Cell<T> {
    slot: Mutex<Slot<T>>,
    waiters: Waiters,
    /// Set once the slot is no longer `Pending`, for waiters that poll before sleeping (a
    /// short task's result usually lands within moments).
    done: AtomicBool,
    /// The waker of the task awaiting this result (an `AsyncResult` has one reader).
    waker: Mutex<Option<Waker>>,
    /// `QUEUED` until a backend starts the call (sends a job of it to a worker, or a thread
    /// picks it up), `STARTED` then, or `CANCELLED` by the reader first.
    progress: AtomicU8,
}

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

impl<T> Cell<T> {
    pub(crate) fn new() -> Arc<Cell<T>> {
        Arc::new(Cell {
            slot: Mutex::new(Slot::Pending),
            waiters: Waiters::default(),
            done: AtomicBool::new(false),
            waker: Mutex::new(None),
            progress: AtomicU8::new(QUEUED),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        lock(&self.slot)
    }

    /// Runs the callbacks (a panicking callback is contained), then publishes.
    pub(crate) fn set(&self, value: Result<T>, callbacks: &Callbacks<T>) {
        callbacks.run(&value);
        *self.lock() = Slot::Done(value);
        self.done.store(true, Ordering::Release);
        self.waiters.notify_all();
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }

    /// A backend is about to start (a part of) the call: false if it was cancelled, and
    /// then nothing of it may run.
    pub(crate) fn claim(&self) -> bool {
        match self
            .progress
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => now == STARTED,
        }
    }

    /// Cancels the call if nothing of it has started: it then fails with `Cancelled` (no
    /// callback runs), and true is returned.
    fn cancel(&self) -> bool {
        let cancelled = self
            .progress
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if cancelled {
            self.set(Err(Error::Cancelled), &Callbacks::default());
        }
        cancelled
    }

    /// Whether the result is in (or was taken).
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Registers `waker` to be woken when the result lands; true if it already has (then
    /// nothing is registered). Registering before checking means a result landing in
    /// between is never missed.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        {
            let mut w = lock(&self.waker);
            match &*w {
                Some(old) if old.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        }
        self.is_done()
    }

    /// Waits until done or `deadline`; true if done (or taken).
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        poll_briefly_for(deadline, || self.done.load(Ordering::Acquire));
        let mut g = self.lock();
        while matches!(*g, Slot::Pending) {
            g = match self.waiters.wait(g, deadline) {
                Ok(g) => g,
                Err(_) => return false,
            };
        }
        true
    }

    fn take(&self) -> Result<T> {
        let mut g = self.lock();
        match std::mem::replace(&mut *g, Slot::Taken) {
            Slot::Done(v) => v,
            Slot::Taken => Err(Error::ResultTaken),
            Slot::Pending => {
                *g = Slot::Pending;
                Err(Error::NotReady)
            }
        }
    }
}

/// The result of an asynchronous call (`apply_async`, `map_async`, `starmap_async`), like
/// Python's `AsyncResult`.
///
/// ```no_run
/// # use multiproc::prelude::*;
/// # #[pool_task] fn add(a: i64, b: i64) -> i64 { a + b }
/// # fn demo(pool: &Pool) -> multiproc::Result<()> {
/// let r = pool.apply_async(add, (1, 2))?;
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.get()?, 3);
/// # Ok(()) }
/// ```
#[must_use = "an AsyncResult does nothing unless you get() or wait() on it"]
pub struct AsyncResult<T> {
    cell: Arc<Cell<T>>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(cell: Arc<Cell<T>>) -> Self {
        AsyncResult { cell }
    }

    /// Blocks until the result is available and returns it.
    pub fn get(self) -> Result<T> {
        self.cell.wait_until(None);
        self.cell.take()
    }

    /// Waits at most `timeout`. On `Err(Error::Timeout)` the result stays fetchable by a later
    /// call; once returned (value or task error) it is taken, and later calls give
    /// `Error::ResultTaken`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        if !self.cell.wait_until(deadline_after(timeout)) {
            return Err(Error::Timeout);
        }
        self.cell.take()
    }

    /// Blocks until the result is available.
    pub fn wait(&self) {
        self.cell.wait_until(None);
    }

    /// Waits at most `timeout`; returns whether the result is available.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.cell.wait_until(deadline_after(timeout))
    }

    /// Whether the call has completed.
    pub fn ready(&self) -> bool {
        !matches!(*self.cell.lock(), Slot::Pending)
    }

    /// Whether the call completed without error; `Err(Error::NotReady)` before it completes
    /// (Python raises `ValueError` there).
    pub fn successful(&self) -> Result<bool> {
        match &*self.cell.lock() {
            Slot::Pending => Err(Error::NotReady),
            Slot::Done(r) => Ok(r.is_ok()),
            Slot::Taken => Err(Error::ResultTaken),
        }
    }
}

/// Awaiting an `AsyncResult` gives what [`get`](AsyncResult::get) gives, without blocking the
/// executor's thread: the result's arrival wakes the task (no thread per await, no runtime
/// dependency: tokio, smol, async-std or a hand-written executor all work). Dropping the
/// future before it completes cancels nothing; the call runs to its end and its result is
/// dropped.
///
/// ```no_run
/// # use multiproc::prelude::*;
/// # #[pool_task] fn add(a: i64, b: i64) -> i64 { a + b }
/// # async fn demo(pool: &Pool) -> multiproc::Result<()> {
/// let sum = pool.apply_async(add, (1, 2))?.await?;
/// assert_eq!(sum, 3);
/// # Ok(()) }
/// ```
impl<T> std::future::Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if self.cell.register(cx.waker()) {
            Poll::Ready(self.cell.take())
        } else {
            Poll::Pending
        }
    }
}

// An `AsyncResult` holds an `Arc` and nothing pinned.
impl<T> Unpin for AsyncResult<T> {}

impl<T> AsyncResult<T> {
    /// Cancels the call if none of it has started yet (Python's `Future.cancel`): true if it
    /// was, and then it will not run, and `get` gives `Err(Error::Cancelled)`; false if it
    /// is running or done (a job already sent to a worker counts as running). Callbacks do
    /// not run for a cancelled call.
    pub fn cancel(&self) -> bool {
        self.cell.cancel()
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cell.progress.load(Ordering::Acquire) == CANCELLED
    }

    /// Whether the call has completed: [`ready`](AsyncResult::ready) under the name
    /// `concurrent.futures` uses.
    pub fn done(&self) -> bool {
        self.cell.is_done()
    }

    /// Registers `waker` for the result's arrival; true if it has arrived already.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        self.cell.register(waker)
    }
}

/// Waits for `r`, at most `timeout` if given.
pub(crate) fn wait<T>(r: AsyncResult<T>, timeout: Option<std::time::Duration>) -> Result<T> {
    match timeout {
        None => r.get(),
        Some(t) => r.get_timeout(t),
    }
}

struct MapState<R> {
    /// Each chunk's values, or the error of its first failing item.
    parts: Vec<Option<Result<Vec<R>>>>,
    remaining: usize,
}

/// Sink of a `map`/`starmap` call: gathers chunks, publishes the whole list when all are in.
pub(crate) struct MapSink<R> {
    state: Mutex<MapState<R>>,
    pub cell: Arc<Cell<Vec<R>>>,
    callbacks: Callbacks<Vec<R>>,
    progress: Option<Counter>,
    _r: PhantomData<fn() -> R>,
}

impl<R> MapSink<R> {
    pub(crate) fn new(
        parts: usize,
        callbacks: Callbacks<Vec<R>>,
        progress: Option<Counter>,
    ) -> MapSink<R> {
        MapSink {
            state: Mutex::new(MapState {
                parts: (0..parts).map(|_| None).collect(),
                remaining: parts,
            }),
            cell: Cell::new(),
            callbacks,
            progress,
            _r: PhantomData,
        }
    }

    /// An empty map completes at once.
    pub(crate) fn complete_empty(&self) {
        self.cell.set(Ok(Vec::new()), &self.callbacks);
    }
}

impl<R> MapSink<R> {
    /// Records one chunk's results; the last chunk publishes the whole list.
    pub(crate) fn complete_part(&self, part: usize, items: Vec<Result<R>>) {
        let n = items.len();
        self.complete_values(part, n, items.into_iter().collect());
    }

    /// Records one chunk of `n` items: its values, or the error of its first failing item.
    /// The last chunk publishes the whole list, or the first error in input order.
    pub(crate) fn complete_values(&self, part: usize, n: usize, values: Result<Vec<R>>) {
        if let Some(p) = &self.progress {
            p.add(n);
        }
        let all = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if part >= st.parts.len() || st.parts[part].is_some() {
                return; // cannot happen: each part completes once
            }
            st.parts[part] = Some(values);
            st.remaining -= 1;
            if st.remaining > 0 {
                return;
            }
            std::mem::take(&mut st.parts)
        };
        self.cell
            .set(concat(all.into_iter().flatten()), &self.callbacks);
    }
}

/// The chunks' values joined in order (one copy into a list of the right size), or the
/// first chunk's error.
fn concat<R>(parts: impl Iterator<Item = Result<Vec<R>>>) -> Result<Vec<R>> {
    let mut parts = parts.collect::<Result<Vec<Vec<R>>>>()?;
    if parts.len() == 1 {
        return Ok(parts.pop().unwrap_or_default());
    }
    let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for mut p in parts {
        all.append(&mut p);
    }
    Ok(all)
}

/// Runs a user callback, containing a panic so the slot thread and the pool live on.
pub(crate) fn run_contained(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}
