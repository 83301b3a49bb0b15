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
    /// The list so far: every value of parts `0..next`, in input order. `None` while the
    /// thread completing part `next` appends to it outside the lock.
    list: Option<Vec<R>>,
    /// The first part not yet in `list`.
    next: usize,
    /// Parts that finished before their turn: their values, or their first error.
    early: std::collections::BTreeMap<usize, Result<Vec<R>>>,
    /// The error of the first failing part in input order; later parts are not kept.
    failed: Option<Error>,
    remaining: usize,
    /// Items in the whole map: the list's size, reserved by the first chunk to land in it.
    items: usize,
}

impl<R> MapState<R> {
    /// Moves the parts waiting for their turn into the list, in order, while it is here.
    fn merge_early(&mut self) {
        let Some(list) = self.list.as_mut() else {
            return; // its holder merges when it puts the list back
        };
        while let Some(part) = self.early.remove(&self.next) {
            match part {
                Ok(mut values) if self.failed.is_none() => list.append(&mut values),
                Ok(_) => {}
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
            self.next += 1;
        }
    }
}

/// Sink of a `map`/`starmap` call: gathers chunks, publishes the whole list when all are in.
/// Chunks finishing in input order are decoded straight into the list the caller gets: no
/// chunk buffers and no copy at the end, the usual case; a chunk finishing ahead of its
/// turn waits in its own buffer. The list is sized for every item by the first chunk to
/// land in it, on the thread that completes chunks, not when the map starts on the
/// caller's: measured with glibc, a list reserved on the caller's thread had its pages
/// given back and faulted in afresh on every map (0.8M page faults in 3 s of 100k-item
/// maps, half the speed).
pub(crate) struct MapSink<R> {
    state: Mutex<MapState<R>>,
    pub cell: Arc<Cell<Vec<R>>>,
    callbacks: Callbacks<Vec<R>>,
    progress: Option<Counter>,
    _r: PhantomData<fn() -> R>,
}

impl<R> MapSink<R> {
    /// The sink of a map of `items` items in `parts` chunks.
    pub(crate) fn new(
        parts: usize,
        items: usize,
        callbacks: Callbacks<Vec<R>>,
        progress: Option<Counter>,
    ) -> MapSink<R> {
        MapSink {
            state: Mutex::new(MapState {
                list: Some(Vec::new()),
                items,
                next: 0,
                early: std::collections::BTreeMap::new(),
                failed: None,
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
        self.complete_with(part, n, |list| {
            for item in items {
                list.push(item?);
            }
            Ok(())
        });
    }

    /// Records chunk `part` of `n` items: `fill` appends its values to the list it is given,
    /// or answers the error of its first failing item (what it appended is then dropped).
    /// The last chunk publishes the whole list, or the first error in input order.
    pub(crate) fn complete_with(
        &self,
        part: usize,
        n: usize,
        fill: impl FnOnce(&mut Vec<R>) -> Result<()>,
    ) {
        if let Some(p) = &self.progress {
            p.add(n);
        }
        let fill_into = |list: &mut Vec<R>| {
            let mark = list.len();
            let r = fill(list);
            if r.is_err() {
                list.truncate(mark);
            }
            r
        };
        let mut st = lock(&self.state);
        if part < st.next || st.early.contains_key(&part) {
            return; // cannot happen: each part completes once
        }
        if st.failed.is_some() {
            // An earlier part failed: the map's answer is that error, these values unused.
            if part == st.next {
                st.next += 1;
                st.merge_early();
            } else {
                st.early.insert(part, Ok(Vec::new()));
            }
        } else if part == st.next && st.list.is_some() {
            let mut list = st.list.take().unwrap_or_default();
            if list.capacity() == 0 {
                list.reserve_exact(st.items);
            }
            drop(st);
            let r = fill_into(&mut list);
            st = lock(&self.state);
            st.list = Some(list);
            if let Err(e) = r {
                st.failed = Some(e);
            }
            st.next += 1;
            st.merge_early();
        } else {
            drop(st);
            let mut values = Vec::new();
            let r = fill_into(&mut values).map(|()| values);
            st = lock(&self.state);
            st.early.insert(part, r);
            st.merge_early();
        }
        st.remaining -= 1;
        if st.remaining > 0 {
            return;
        }
        let all = match (st.failed.take(), st.list.take()) {
            (Some(e), _) => Err(e),
            (None, Some(list)) if st.early.is_empty() => Ok(list),
            _ => Err(Error::Protocol("a map finished with chunks missing".into())),
        };
        drop(st);
        self.cell.set(all, &self.callbacks);
    }
}

/// Runs a user callback, containing a panic so the slot thread and the pool live on.
pub(crate) fn run_contained(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

#[cfg(test)]
mod map_sink_tests {
    use super::*;

    fn sink(parts: usize) -> MapSink<u32> {
        MapSink::new(parts, 2 * parts, Callbacks::default(), None)
    }

    fn values(part: usize) -> Vec<Result<u32>> {
        let first = 2 * part as u32;
        vec![Ok(first), Ok(first + 1)]
    }

    fn answer(s: &MapSink<u32>) -> Option<Result<Vec<u32>>> {
        let r = AsyncResult::new(s.cell.clone());
        r.ready().then(|| r.get())
    }

    #[test]
    fn chunks_finishing_in_any_order_give_the_list_in_input_order() {
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 0, 3, 1]] {
            let s = sink(4);
            for (k, &part) in order.iter().enumerate() {
                assert!(answer(&s).is_none(), "{order:?}: done after {k} chunks");
                s.complete_part(part, values(part));
            }
            assert_eq!(
                answer(&s).unwrap().unwrap(),
                (0..8).collect::<Vec<_>>(),
                "{order:?}"
            );
        }
    }

    #[test]
    fn the_first_failure_in_input_order_is_the_answer_whatever_finishes_first() {
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [3, 1, 0, 2], [1, 3, 2, 0]] {
            let s = sink(4);
            for &part in &order {
                let mut items = values(part);
                if part == 1 || part == 3 {
                    items[1] = Err(Error::Protocol(format!("item of part {part}")));
                }
                s.complete_part(part, items);
            }
            match answer(&s) {
                Some(Err(Error::Protocol(m))) => assert_eq!(m, "item of part 1", "{order:?}"),
                other => panic!("{order:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn chunks_completed_by_threads_at_once_all_land_in_order() {
        for _ in 0..20 {
            let s = Arc::new(sink(64));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for part in (t..64).step_by(4) {
                            s.complete_part(part, values(part));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(answer(&s).unwrap().unwrap(), (0..128).collect::<Vec<_>>());
        }
    }

    #[test]
    fn parts_in_shuffled_orders_with_and_without_failures_give_the_right_answer() {
        // Many parts finishing far ahead of their turn, in pseudo-random orders: the list
        // is every value in input order, or the first error.
        let mut seed = 0x9e37_79b9_u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for round in 0..60 {
            let parts = 1 + next() % 48;
            let mut order: Vec<usize> = (0..parts).collect();
            for i in (1..parts).rev() {
                order.swap(i, next() % (i + 1));
            }
            let failing: Vec<usize> = match round % 3 {
                0 => Vec::new(),
                _ => (0..1 + next() % 3).map(|_| next() % parts).collect(),
            };
            let s = sink(parts);
            for (k, &part) in order.iter().enumerate() {
                assert!(answer(&s).is_none(), "round {round}: done after {k} parts");
                let mut items = values(part);
                if failing.contains(&part) {
                    items[0] = Err(Error::Protocol(format!("part {part}")));
                }
                s.complete_part(part, items);
            }
            let got = answer(&s).expect("every part is in");
            match failing.iter().min() {
                None => assert_eq!(got.unwrap(), (0..2 * parts as u32).collect::<Vec<_>>()),
                Some(first) => match got {
                    Err(Error::Protocol(m)) => assert_eq!(m, format!("part {first}")),
                    other => panic!("round {round}: {other:?}"),
                },
            }
        }
    }

    #[test]
    fn a_chunk_completed_twice_counts_once() {
        let s = sink(2);
        s.complete_part(1, values(1));
        s.complete_part(1, values(1));
        assert!(answer(&s).is_none());
        s.complete_part(0, values(0));
        s.complete_part(0, values(0));
        assert_eq!(answer(&s).unwrap().unwrap(), [0, 1, 2, 3]);
    }
}
