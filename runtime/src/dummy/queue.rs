//! Thread versions of `Queue`, `JoinableQueue` and `SimpleQueue` (the process ones are
//! `crate::queue`): items are cloned from the borrowed `put` argument, never serialized.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::monitor::Monitor;
use crate::error::{Error, Result};
use crate::sys::wait::deadline_after;

struct QState<T> {
    items: VecDeque<T>,
    maxsize: usize,
    closed: bool,
    unfinished: usize,
}

/// A FIFO queue between threads (the thread version of [`crate::Queue`]).
pub struct Queue<T> {
    m: Arc<Monitor<QState<T>>>,
}

/// A thread [`Queue`] with `task_done` and `join`.
/// The calls are the process version's: see [its example](crate::Queue).
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

/// The plain thread queue: `put`, `get`, `empty`, `close`.
/// The calls are the process version's: see [its example](crate::SimpleQueue).
pub struct SimpleQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { m: self.m.clone() }
    }
}
impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}
impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { q: self.q.clone() }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.m.lock();
        f.debug_struct("dummy::Queue")
            .field("qsize", &s.items.len())
            .field("closed", &s.closed)
            .finish()
    }
}

impl<T: Clone + Send> Queue<T> {
    /// A queue without a limit.
    pub fn new() -> Result<Queue<T>> {
        Queue::with_maxsize(0)
    }

    /// A queue holding at most `maxsize` items (0: no limit).
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        Ok(Queue {
            m: Monitor::new(QState {
                items: VecDeque::new(),
                maxsize,
                closed: false,
                unfinished: 0,
            }),
        })
    }

    fn put_inner(&self, item: &T, deadline: Option<Instant>, joinable: bool) -> Result<()> {
        let g = self.m.lock();
        let mut g = self
            .m
            .wait_while(g, deadline, |s| {
                !s.closed && s.maxsize != 0 && s.items.len() >= s.maxsize
            })
            .map_err(|_| Error::Full)?;
        if g.closed {
            return Err(Error::Closed);
        }
        g.items.push_back(item.clone());
        if joinable {
            g.unfinished += 1;
        }
        drop(g);
        self.m.changed.notify_all();
        Ok(())
    }

    fn get_inner(&self, deadline: Option<Instant>) -> Result<T> {
        let g = self.m.lock();
        let mut g = self
            .m
            .wait_while(g, deadline, |s| !s.closed && s.items.is_empty())
            .map_err(|_| Error::Empty)?;
        let item = g.items.pop_front().ok_or(Error::Closed)?;
        drop(g);
        self.m.changed.notify_all();
        Ok(item)
    }

    /// Puts a clone of `item`, waiting for room.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_inner(item, None, false)
    }
    /// Like `put`, giving up with `Full` after `timeout`.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_inner(item, deadline_after(timeout), false)
    }
    /// Puts if there is room now, else `Full`.
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.put_inner(item, Some(Instant::now()), false)
    }
    /// Takes the oldest item, waiting; `Closed` once closed and drained.
    pub fn get(&self) -> Result<T> {
        self.get_inner(None)
    }
    /// Like `get`, giving up with `Empty` after `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_inner(deadline_after(timeout))
    }
    /// Takes an item if there is one now, else `Empty`.
    pub fn get_nowait(&self) -> Result<T> {
        self.get_inner(Some(Instant::now()))
    }
    /// Number of items queued.
    pub fn qsize(&self) -> usize {
        self.m.lock().items.len()
    }
    /// Whether no item is queued.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }
    /// Whether `maxsize` items are queued.
    pub fn full(&self) -> bool {
        let s = self.m.lock();
        s.maxsize != 0 && s.items.len() >= s.maxsize
    }
    /// Closes the queue for every thread: puts fail, gets drain then fail with `Closed`.
    pub fn close(&self) {
        self.m.lock().closed = true;
        self.m.changed.notify_all();
    }
    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.m.lock().closed
    }
}

impl<T: Clone + Send> JoinableQueue<T> {
    /// A joinable queue without a limit.
    pub fn new() -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { q: Queue::new()? })
    }
    /// A joinable queue holding at most `maxsize` items.
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            q: Queue::with_maxsize(maxsize)?,
        })
    }
    /// Puts a clone of `item`, waiting for room.
    pub fn put(&self, item: &T) -> Result<()> {
        self.q.put_inner(item, None, true)
    }
    /// Like `put`, giving up with `Full` after `timeout`.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.q.put_inner(item, deadline_after(timeout), true)
    }
    /// Puts if there is room now, else `Full`.
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.q.put_inner(item, Some(Instant::now()), true)
    }
    /// Takes the oldest item, waiting.
    pub fn get(&self) -> Result<T> {
        self.q.get()
    }
    /// Like `get`, giving up with `Empty` after `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.q.get_timeout(timeout)
    }
    /// Takes an item if there is one now.
    pub fn get_nowait(&self) -> Result<T> {
        self.q.get_nowait()
    }
    /// Number of items queued.
    pub fn qsize(&self) -> usize {
        self.q.qsize()
    }
    /// Whether no item is queued.
    pub fn empty(&self) -> bool {
        self.q.empty()
    }
    /// Whether `maxsize` items are queued.
    pub fn full(&self) -> bool {
        self.q.full()
    }
    /// Closes the queue.
    pub fn close(&self) {
        self.q.close()
    }
    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.q.is_closed()
    }
    /// Marks one item as processed; an error if called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        let mut s = self.q.m.lock();
        if s.unfinished == 0 {
            return Err(Error::ReleasedTooOften {
                what: "a joinable queue's task_done",
            });
        }
        s.unfinished -= 1;
        drop(s);
        self.q.m.changed.notify_all();
        Ok(())
    }
    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        let g = self.q.m.lock();
        self.q.m.wait_while(g, None, |s| s.unfinished > 0).map(drop)
    }
    /// Like `join`, waiting at most `timeout`: `Ok(false)` if items were still unfinished
    /// then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        let g = self.q.m.lock();
        match self
            .q
            .m
            .wait_while(g, deadline_after(timeout), |s| s.unfinished > 0)
        {
            Ok(_) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: Clone + Send> SimpleQueue<T> {
    /// A new simple queue.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue { q: Queue::new()? })
    }
    /// Puts a clone of `item`.
    pub fn put(&self, item: &T) -> Result<()> {
        self.q.put(item)
    }
    /// Takes the oldest item, waiting.
    pub fn get(&self) -> Result<T> {
        self.q.get()
    }
    /// Whether no item is queued.
    pub fn empty(&self) -> bool {
        self.q.empty()
    }
    /// Closes the queue.
    pub fn close(&self) {
        self.q.close()
    }
    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.q.is_closed()
    }
}

debug_by_name!(<T> JoinableQueue, SimpleQueue);
