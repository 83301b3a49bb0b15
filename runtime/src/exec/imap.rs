//! `imap` and `imap_unordered`: lazy iterators with a bounded window of chunks in flight, so
//! an endless input runs in constant memory, and dropping the iterator cancels what has not
//! started. The iterator is shared by both pools; each supplies a *feeder* that submits the
//! next chunks of the input to its own workers, delivering results into the [`Inbox`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
#[cfg(feature = "futures")]
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::progress::Counter;
use crate::error::{Error, Result};
use crate::sys::wait::{deadline_after, lock, poll_briefly_for, Waiters, POLL_BRIEFLY};

struct Chunks<R> {
    /// Ordered: the finished chunks of parts `base`, `base + 1`, ... (`None`: not in yet).
    /// The window bounds how far ahead of `base` a part can be.
    ahead: VecDeque<Option<Vec<Result<R>>>>,
    base: usize,
    /// Unordered: finished chunks in completion order.
    arrived: VecDeque<Vec<Result<R>>>,
}

impl<R> Chunks<R> {
    /// Takes the next chunk to yield, if it is in: part `next` (the oldest not yet taken:
    /// parts are taken in order) or whichever came first.
    fn take(&mut self, ordered: bool, next: usize) -> Option<Vec<Result<R>>> {
        if !ordered {
            return self.arrived.pop_front();
        }
        debug_assert_eq!(next, self.base, "ordered parts are taken in order");
        if next != self.base || !matches!(self.ahead.front(), Some(Some(_))) {
            return None;
        }
        self.base += 1;
        self.ahead.pop_front().flatten()
    }
}

/// Where finished chunks of one imap call land.
pub(crate) struct Inbox<R> {
    chunks: Mutex<Chunks<R>>,
    waiters: Waiters,
    /// Chunks delivered so far, for a waiter polling before it sleeps.
    delivered: AtomicUsize,
    cancelled: AtomicBool,
    ordered: bool,
    /// The waker of a task polling the iterator as a `Stream`.
    waker: Mutex<Option<Waker>>,
    progress: Option<Counter>,
}

impl<R> Inbox<R> {
    pub(crate) fn new(ordered: bool, progress: Option<Counter>) -> Arc<Inbox<R>> {
        Arc::new(Inbox {
            chunks: Mutex::new(Chunks {
                ahead: VecDeque::new(),
                base: 0,
                arrived: VecDeque::new(),
            }),
            waiters: Waiters::default(),
            delivered: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            ordered,
            waker: Mutex::new(None),
            progress,
        })
    }

    pub(crate) fn deliver(&self, part: usize, items: Vec<Result<R>>) {
        if let Some(p) = &self.progress {
            p.add(items.len());
        }
        let mut chunks = lock(&self.chunks);
        if self.ordered {
            // A part already taken (delivered twice) has no place left.
            if let Some(at) = part.checked_sub(chunks.base) {
                if chunks.ahead.len() <= at {
                    chunks.ahead.resize_with(at + 1, || None);
                }
                chunks.ahead[at] = Some(items);
            }
        } else {
            chunks.arrived.push_back(items);
        }
        self.delivered.fetch_add(1, Ordering::SeqCst);
        drop(chunks);
        self.waiters.notify_all();
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }

    /// The next chunk if it is in: part `next` (ordered) or whichever came first.
    #[cfg(feature = "futures")]
    fn try_take(&self, next: usize) -> Option<Vec<Result<R>>> {
        lock(&self.chunks).take(self.ordered, next)
    }

    /// Delivers `items` copies of `e` for a chunk that could not run.
    pub(crate) fn fail(&self, part: usize, items: usize, e: &Error) {
        self.deliver(part, (0..items).map(|_| Err(e.clone())).collect());
    }

    /// Whether the iterator was dropped: chunks not yet started need not run.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The next chunk to yield: part `next` (ordered) or whichever came first.
    fn wait(&self, next: usize, deadline: Option<Instant>) -> Result<Vec<Result<R>>> {
        // Until when to poll before sleeping: set on the first miss.
        let mut poll_until = None;
        let mut chunks = lock(&self.chunks);
        loop {
            if let Some(items) = chunks.take(self.ordered, next) {
                return Ok(items);
            }
            let until = *poll_until.get_or_insert_with(|| {
                let end = Instant::now() + POLL_BRIEFLY;
                deadline.map_or(end, |d| d.min(end))
            });
            if Instant::now() < until {
                // The next chunk is usually moments away: poll for it before sleeping.
                let seen = self.delivered.load(Ordering::SeqCst);
                drop(chunks);
                poll_briefly_for(Some(until), || {
                    self.delivered.load(Ordering::SeqCst) != seen
                });
                chunks = lock(&self.chunks);
                continue;
            }
            chunks = self
                .waiters
                .wait(chunks, deadline)
                .map_err(|_| Error::Timeout)?;
        }
    }
}

/// How many items an iterator will give, if it says exactly (for a progress bar's total).
pub(crate) fn exact_len(it: &impl Iterator) -> Option<usize> {
    match it.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// Submits up to `max` further chunks, numbered from `first_part`, delivering their results
/// (or their errors) into the inbox. Returns how many parts it used and whether the input is
/// exhausted.
pub(crate) type Feeder<'p> = Box<dyn FnMut(usize, usize) -> (usize, bool) + 'p>;

/// Lazy results of `imap` (in input order) or `imap_unordered` (in completion order), on
/// either pool.
///
/// Each item is a `Result`: a task that panicked yields its error at its position and the
/// iteration goes on. Work starts when the iterator is created (as in Python); at most a
/// fixed window of chunks is in flight or buffered, whatever the input's length. Dropping
/// the iterator early cancels the chunks not yet started. [`next_timeout`](Imap::next_timeout)
/// waits at most a given time for one item.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn check(x: u32) -> u32 {
///     assert!(x != 3, "3 is bad");
///     x * 10
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     let out: Vec<multiproc::Result<u32>> = pool.imap(check, 0..5u32)?.collect();
///     assert_eq!(out.len(), 5);
///     assert!(matches!(out[3], Err(Error::TaskPanicked { .. })));
///     assert_eq!(*out[4].as_ref().unwrap(), 40);
///     // In completion order, chunks of 2:
///     let mut any: Vec<u32> = pool
///         .imap_unordered_with(check, [1, 2, 4], Opts::new().chunksize(2))?
///         .collect::<multiproc::Result<_>>()?;
///     any.sort();
///     assert_eq!(any, [10, 20, 40]);
///     Ok(())
/// }
/// ```
pub struct Imap<'p, R> {
    inbox: Arc<Inbox<R>>,
    feed: Feeder<'p>,
    window: usize,
    timeout: Option<Duration>,
    submitted: usize,
    yielded: usize,
    input_done: bool,
    current: VecDeque<Result<R>>,
}

impl<'p, R> Imap<'p, R> {
    pub(crate) fn new(
        inbox: Arc<Inbox<R>>,
        feed: Feeder<'p>,
        window: usize,
        timeout: Option<Duration>,
    ) -> Self {
        let mut imap = Imap {
            inbox,
            feed,
            window: window.max(2),
            timeout,
            submitted: 0,
            yielded: 0,
            input_done: false,
            current: VecDeque::new(),
        };
        // Work starts when the iterator is made, as Python's does, not at the first next().
        imap.top_up();
        imap
    }

    /// The next result, waiting at most `timeout` for it (Python's `next(timeout)`):
    /// `Some(Err(Error::Timeout))` if it is not there by then, and the iteration goes on
    /// as if nothing happened (the item comes with a later call). Overrides the call's
    /// `Opts::timeout` for this call only.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_within(Some(timeout))
    }

    fn next_within(&mut self, timeout: Option<Duration>) -> Option<Result<R>> {
        loop {
            if let Some(item) = self.current.pop_front() {
                return Some(item);
            }
            self.top_up();
            if self.submitted == self.yielded && self.input_done {
                return None;
            }
            let deadline = timeout.and_then(deadline_after);
            match self.inbox.wait(self.yielded, deadline) {
                Ok(items) => {
                    self.yielded += 1;
                    self.current.extend(items);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Submits chunks until the window is full or the input ends. Waits until half the
    /// window is free, so chunks go out in batches rather than one per item consumed.
    fn top_up(&mut self) {
        let in_flight = self.submitted - self.yielded;
        if self.input_done || (in_flight > 0 && in_flight > self.window / 2) {
            return;
        }
        let (used, done) = (self.feed)(self.submitted, self.window - in_flight);
        self.submitted += used;
        self.input_done = done;
    }
}

#[cfg(feature = "futures")]
impl<R> Imap<'_, R> {
    /// The next item for a task: `Pending` (with `cx`'s waker registered) until it is in.
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        loop {
            if let Some(item) = self.current.pop_front() {
                return Poll::Ready(Some(item));
            }
            self.top_up();
            if self.submitted == self.yielded && self.input_done {
                return Poll::Ready(None);
            }
            // Register first, then look: a chunk landing in between is not missed.
            *lock(&self.inbox.waker) = Some(cx.waker().clone());
            match self.inbox.try_take(self.yielded) {
                Some(items) => {
                    self.yielded += 1;
                    self.current.extend(items);
                }
                None => return Poll::Pending,
            }
        }
    }
}

#[cfg(feature = "futures")]
impl<'p, R> Imap<'p, R> {
    /// This `imap` as a `Stream` (`futures-core`'s; the `futures` feature), for async code:
    /// awaiting the next item never blocks the executor's thread. The call's
    /// `Opts::timeout` does not apply (use the runtime's timeouts). Dropping it cancels the
    /// chunks not yet started, as dropping the iterator does.
    ///
    /// ```no_run
    /// use multiproc::prelude::*;
    ///
    /// #[pool_task]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// // Under any executor; `futures::StreamExt::next` reads the same.
    /// async fn total(pool: &Pool) -> multiproc::Result<u64> {
    ///     let mut stream = std::pin::pin!(pool.imap(square, 0..100u64)?.into_stream());
    ///     let mut sum = 0;
    ///     while let Some(x) = std::future::poll_fn(|cx| {
    ///         futures_core::Stream::poll_next(stream.as_mut(), cx)
    ///     })
    ///     .await
    ///     {
    ///         sum += x?;
    ///     }
    ///     Ok(sum)
    /// }
    /// # fn main() {}
    /// ```
    pub fn into_stream(self) -> ImapStream<'p, R> {
        ImapStream(self)
    }
}

/// An [`Imap`] as a `Stream`: see [`Imap::into_stream`], which has an example.
#[cfg(feature = "futures")]
#[derive(Debug)]
pub struct ImapStream<'p, R>(Imap<'p, R>);

// Nothing in it is pinned (its items sit in a queue, moved out whole).
#[cfg(feature = "futures")]
impl<R> Unpin for ImapStream<'_, R> {}

#[cfg(feature = "futures")]
impl<R> futures_core::Stream for ImapStream<'_, R> {
    type Item = Result<R>;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        self.get_mut().0.poll_item(cx)
    }
}

impl<R> Iterator for Imap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_within(self.timeout)
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        self.inbox.cancelled.store(true, Ordering::Relaxed);
    }
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("in_flight", &(self.submitted - self.yielded))
            .field("input_done", &self.input_done)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(part: usize) -> Vec<Result<usize>> {
        vec![Ok(part * 10), Ok(part * 10 + 1)]
    }

    #[test]
    fn ordered_parts_come_out_in_order_whatever_order_they_land_in() {
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            let inbox = Inbox::<usize>::new(true, None);
            let mut next = 0;
            let mut got = Vec::new();
            for part in order {
                inbox.deliver(part, chunk(part));
                while let Some(items) = lock(&inbox.chunks).take(true, next) {
                    next += 1;
                    got.extend(items.into_iter().map(|r| r.unwrap()));
                }
            }
            assert_eq!(
                got,
                [0, 1, 10, 11, 20, 21, 30, 31],
                "landing order {order:?}"
            );
            // A part delivered again once taken is dropped, not kept forever.
            inbox.deliver(1, chunk(1));
            let c = lock(&inbox.chunks);
            assert!(c.ahead.is_empty() && c.base == 4);
        }
    }

    #[test]
    fn unordered_parts_come_out_as_they_land() {
        let inbox = Inbox::<usize>::new(false, None);
        for part in [2, 0, 1] {
            inbox.deliver(part, chunk(part));
        }
        let firsts: Vec<usize> = (0..3)
            .map(|i| inbox.wait(i, None).unwrap()[0].as_ref().copied().unwrap())
            .collect();
        assert_eq!(firsts, [20, 0, 10]);
    }
}
