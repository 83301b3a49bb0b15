//! Thread versions of the queues, pipes, shared values and locks, with the process versions'
//! API where it makes sense. Nothing is serialized: items move between threads as they are
//! (queues clone the item `put` borrows). Built on `std::sync` (`Mutex` + `Condvar`, see `wait::Waiters`).
//!
//! Differences from the process versions: handles cannot cross into other processes; `T`
//! needs `Clone` for queues (the process queue encodes the borrowed item instead) and `Send`;
//! values hold any `T: Send`, not only `Shareable` data; a thread that panics while holding a
//! lock poisons nothing (the guard releases it while unwinding), so there is no `OwnerDied`.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::error::{Error, LockResult, Result, TryLockResult};
use crate::shm::waitlist::Waitlist;
use crate::sys::wait::{deadline_after, lock, Waiters};

/// State behind a mutex with one condition variable; poisoning is ignored (all state here is
/// updated in single steps).
struct Monitor<S> {
    state: Mutex<S>,
    changed: Waiters,
}

impl<S> Monitor<S> {
    fn new(s: S) -> Arc<Monitor<S>> {
        Arc::new(Monitor {
            state: Mutex::new(s),
            changed: Waiters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, S> {
        lock(&self.state)
    }

    /// Waits while `blocked(state)`, until `deadline`; `Err(Timeout)` if still blocked then.
    fn wait_while<'a>(
        &'a self,
        mut g: MutexGuard<'a, S>,
        deadline: Option<Instant>,
        mut blocked: impl FnMut(&mut S) -> bool,
    ) -> Result<MutexGuard<'a, S>> {
        while blocked(&mut g) {
            g = self.changed.wait(g, deadline).map_err(|_| Error::Timeout)?;
        }
        Ok(g)
    }
}

// --- queues -------------------------------------------------------------------------------

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
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

/// The plain thread queue: `put`, `get`, `empty`, `close`.
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
            return Err(Error::InvalidArgument(
                "task_done() called more times than there were items".into(),
            ));
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

// --- pipes --------------------------------------------------------------------------------

enum Msg<T> {
    Item(T),
    Bytes(Vec<u8>),
}

/// The channel and a message `poll` took out of it early.
type Peekable<T> = (mpsc::Receiver<Msg<T>>, Option<Msg<T>>);

struct RecvEnd<T> {
    rx: Mutex<Peekable<T>>,
}

impl<T> RecvEnd<T> {
    fn next(&self, deadline: Option<Instant>) -> Result<Msg<T>> {
        let mut g = lock(&self.rx);
        match g.1.take() {
            Some(m) => Ok(m),
            None => receive(&g.0, deadline),
        }
    }

    /// Whether a message (or the end of the stream) is there, waiting up to `timeout`. A
    /// message taken to find out is kept, under the same lock, for the next receive.
    fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(deadline_after);
        let mut g = lock(&self.rx);
        if g.1.is_some() {
            return Ok(true);
        }
        match receive(&g.0, deadline) {
            Ok(m) => {
                g.1 = Some(m);
                Ok(true)
            }
            Err(Error::Eof) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn recv(&self, deadline: Option<Instant>) -> Result<T> {
        match self.next(deadline)? {
            Msg::Item(t) => Ok(t),
            Msg::Bytes(_) => Err(Error::serialization(
                "a pipe message",
                "raw bytes were sent where an item was expected",
            )),
        }
    }

    fn recv_bytes(&self) -> Result<Vec<u8>> {
        match self.next(None)? {
            Msg::Bytes(b) => Ok(b),
            Msg::Item(_) => Err(Error::serialization(
                "a pipe message",
                "an item was sent where raw bytes were expected",
            )),
        }
    }
}

fn receive<T>(rx: &mpsc::Receiver<Msg<T>>, deadline: Option<Instant>) -> Result<Msg<T>> {
    match deadline {
        None => rx.recv().map_err(|_| Error::Eof),
        Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
            Ok(m) => Ok(m),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Eof),
        },
    }
}

fn send_msg<T>(tx: &mpsc::Sender<Msg<T>>, m: Msg<T>) -> Result<()> {
    tx.send(m).map_err(|_| Error::Eof)
}

/// One end of a two-way thread pipe.
pub struct Connection<T> {
    tx: mpsc::Sender<Msg<T>>,
    rx: RecvEnd<T>,
}
/// The sending end of a one-way thread pipe.
pub struct Sender<T> {
    tx: mpsc::Sender<Msg<T>>,
}
/// The receiving end of a one-way thread pipe.
pub struct Receiver<T> {
    rx: RecvEnd<T>,
}

macro_rules! thread_send_api {
    ($ty:ident) => {
        impl<T: Send> $ty<T> {
            /// Sends an item (moved: nothing is serialized between threads).
            pub fn send(&self, item: T) -> Result<()> {
                send_msg(&self.tx, Msg::Item(item))
            }
            /// Sends raw bytes as one message.
            pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
                send_msg(&self.tx, Msg::Bytes(bytes.to_vec()))
            }
            /// Sends `size` bytes of `buf` from `offset` (the rest if `None`).
            pub fn send_bytes_range(
                &self,
                buf: &[u8],
                offset: usize,
                size: Option<usize>,
            ) -> Result<()> {
                let r = crate::pipe::check_range(buf.len(), offset, size)?;
                self.send_bytes(&buf[r])
            }
        }
    };
}
macro_rules! thread_recv_api {
    ($ty:ident) => {
        impl<T: Send> $ty<T> {
            /// Receives an item; `Eof` once the other end is dropped and nothing is left.
            pub fn recv(&self) -> Result<T> {
                self.rx.recv(None)
            }
            /// Like `recv`, at most `timeout`.
            pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
                self.rx.recv(deadline_after(timeout))
            }
            /// Receives a raw-bytes message.
            pub fn recv_bytes(&self) -> Result<Vec<u8>> {
                self.rx.recv_bytes()
            }
            /// Receives a raw-bytes message into `buf`; too small: the error carries it.
            pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
                let msg = self.rx.recv_bytes()?;
                if msg.len() > buf.len() {
                    return Err(Error::BufferTooSmall {
                        message: msg,
                        capacity: buf.len(),
                    });
                }
                buf[..msg.len()].copy_from_slice(&msg);
                Ok(msg.len())
            }
            /// Whether a message (or the end) is ready, waiting up to `timeout`.
            pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
                self.rx.poll(timeout)
            }
        }
    };
}
thread_send_api!(Connection);
thread_send_api!(Sender);
thread_recv_api!(Connection);
thread_recv_api!(Receiver);

fn recv_end<T>(rx: mpsc::Receiver<Msg<T>>) -> RecvEnd<T> {
    RecvEnd {
        rx: Mutex::new((rx, None)),
    }
}

/// A two-way pipe between threads.
pub fn pipe<T: Send>() -> Result<(Connection<T>, Connection<T>)> {
    let (tx_a, rx_b) = mpsc::channel();
    let (tx_b, rx_a) = mpsc::channel();
    Ok((
        Connection {
            tx: tx_a,
            rx: recv_end(rx_a),
        },
        Connection {
            tx: tx_b,
            rx: recv_end(rx_b),
        },
    ))
}

/// A one-way pipe between threads: `(receiver, sender)`.
pub fn pipe_oneway<T: Send>() -> Result<(Receiver<T>, Sender<T>)> {
    let (tx, rx) = mpsc::channel();
    Ok((Receiver { rx: recv_end(rx) }, Sender { tx }))
}

// --- values -------------------------------------------------------------------------------

/// A value shared by threads, with its lock (the thread version of [`crate::Value`]).
pub struct Value<T> {
    m: Arc<Mutex<T>>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value { m: self.m.clone() }
    }
}

impl<T: Send> Value<T> {
    /// A shared value.
    pub fn new(value: T) -> Result<Value<T>> {
        Ok(Value {
            m: Arc::new(Mutex::new(value)),
        })
    }
    /// Locks the value; the guard dereferences to it. (Never `OwnerDied`: a thread that
    /// panics holding it releases it; the type is the process version's.)
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        Ok(lock(&self.m))
    }
    /// A copy of the value.
    pub fn get(&self) -> Result<T>
    where
        T: Clone,
    {
        Ok(self.lock()?.clone())
    }
    /// Replaces the value.
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }
}

/// A fixed-length array shared by threads, with its lock.
pub struct Array<T> {
    m: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { m: self.m.clone() }
    }
}

impl<T: Send + Clone> Array<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> Result<Array<T>> {
        Ok(Array {
            m: Arc::new(Mutex::new(vec![fill; len])),
        })
    }
    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        Ok(Array {
            m: Arc::new(Mutex::new(values.to_vec())),
        })
    }
    /// Locks the array; the guard dereferences to the elements (a slice of fixed length).
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        Ok(ArrayGuard(lock(&self.m)))
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        lock(&self.m).len()
    }
    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i`; out of range is an error.
    pub fn get(&self, i: usize) -> Result<T> {
        self.lock()?
            .get(i)
            .cloned()
            .ok_or_else(|| Error::InvalidArgument(format!("index {i} out of range")))
    }
    /// Writes element `i`.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let mut g = self.lock()?;
        let slot = g
            .get_mut(i)
            .ok_or_else(|| Error::InvalidArgument(format!("index {i} out of range")))?;
        *slot = value;
        Ok(())
    }
    /// A copy of the elements.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

/// A thread [`Array`]'s lock, held.
pub struct ArrayGuard<'a, T>(MutexGuard<'a, Vec<T>>);

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}
impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

// --- locks --------------------------------------------------------------------------------

#[derive(Default)]
struct LockState {
    owner: Option<ThreadId>,
    depth: usize,
}

/// A lock between threads with timeouts (the thread version of [`crate::Lock`]);
/// `recursive` makes it an [`RLock`].
pub struct Lock {
    m: Arc<Monitor<LockState>>,
    recursive: bool,
}

/// A re-entrant lock between threads.
pub struct RLock(Lock);

/// A held thread [`Lock`] or [`RLock`]; releases on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    m: &'a Monitor<LockState>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.m.lock();
        s.depth -= 1;
        if s.depth == 0 {
            s.owner = None;
            drop(s);
            self.m.changed.notify_all();
        }
    }
}

impl Clone for Lock {
    fn clone(&self) -> Self {
        Lock {
            m: self.m.clone(),
            recursive: self.recursive,
        }
    }
}
impl Clone for RLock {
    fn clone(&self) -> Self {
        RLock(self.0.clone())
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            m: Monitor::new(LockState::default()),
            recursive: false,
        })
    }

    fn take(&self, deadline: Option<Instant>) -> Result<LockGuard<'_>> {
        let me = std::thread::current().id();
        let g = self.m.lock();
        if g.owner == Some(me) && !self.recursive {
            return Err(Error::InvalidArgument(
                "this thread already holds the lock (it is not re-entrant; use an RLock)".into(),
            ));
        }
        let mut g = self
            .m
            .wait_while(g, deadline, |s| s.owner.is_some() && s.owner != Some(me))?;
        g.owner = Some(me);
        g.depth += 1;
        Ok(LockGuard {
            m: &self.m,
            _not_send: PhantomData,
        })
    }

    /// Waits for the lock. (Never `OwnerDied`: a thread that panics holding it releases
    /// it; the result type is the process version's.)
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        Ok(self.take(None)?)
    }
    /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if not free by then.
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        match self.take(deadline_after(timeout)) {
            Ok(g) => Ok(Some(g)),
            Err(Error::Timeout) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    /// Takes the lock if it is free now.
    pub fn try_acquire(&self) -> TryLockResult<LockGuard<'_>> {
        match self.take(Some(Instant::now())) {
            Ok(g) => Ok(Some(g)),
            Err(Error::Timeout | Error::InvalidArgument(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    pub fn new() -> Result<RLock> {
        Ok(RLock(Lock {
            m: Monitor::new(LockState::default()),
            recursive: true,
        }))
    }
    /// Waits for the lock (immediate if this thread holds it).
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        self.0.acquire()
    }
    /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if not free by then.
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        self.0.acquire_timeout(timeout)
    }
    /// Takes the lock if it is free (or held by this thread) now.
    pub fn try_acquire(&self) -> TryLockResult<LockGuard<'_>> {
        self.0.try_acquire()
    }
}

/// A counting semaphore between threads; `bounded` refuses releases above the initial value.
pub struct Semaphore {
    m: Arc<Monitor<u32>>,
    max: Option<u32>,
}

/// A [`Semaphore`] that refuses to be released above its initial value.
pub struct BoundedSemaphore(Semaphore);

impl Clone for Semaphore {
    fn clone(&self) -> Self {
        Semaphore {
            m: self.m.clone(),
            max: self.max,
        }
    }
}
impl Clone for BoundedSemaphore {
    fn clone(&self) -> Self {
        BoundedSemaphore(self.0.clone())
    }
}

/// Gives a unit back when dropped.
#[must_use = "the unit is released as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a>(&'a Semaphore);

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

impl Semaphore {
    /// A semaphore with `value` units.
    pub fn new(value: u32) -> Result<Semaphore> {
        Ok(Semaphore {
            m: Monitor::new(value),
            max: None,
        })
    }
    fn take(&self, deadline: Option<Instant>) -> Result<()> {
        let g = self.m.lock();
        let mut g = self.m.wait_while(g, deadline, |v| *v == 0)?;
        *g -= 1;
        Ok(())
    }
    /// Takes a unit, waiting for one.
    pub fn acquire(&self) -> Result<()> {
        self.take(None)
    }
    /// Like `acquire`, waiting at most `timeout`; `Ok(false)` if no unit came by then.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        match self.take(deadline_after(timeout)) {
            Ok(()) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// Takes a unit if one is available now.
    pub fn try_acquire(&self) -> bool {
        self.take(Some(Instant::now())).is_ok()
    }
    /// Takes a unit; the guard gives it back.
    pub fn guard(&self) -> Result<SemaphoreGuard<'_>> {
        self.acquire()?;
        Ok(SemaphoreGuard(self))
    }
    /// Gives a unit back.
    pub fn release(&self) -> Result<()> {
        let mut v = self.m.lock();
        if self.max.is_some_and(|m| *v >= m) || *v == u32::MAX {
            return Err(Error::InvalidArgument(
                "semaphore released too many times".into(),
            ));
        }
        *v += 1;
        drop(v);
        self.m.changed.notify_all();
        Ok(())
    }
    /// Units available now.
    pub fn value(&self) -> u32 {
        *self.m.lock()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` units (at least 1).
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        if value == 0 {
            return Err(Error::InvalidArgument(
                "a bounded semaphore needs an initial value above 0".into(),
            ));
        }
        Ok(BoundedSemaphore(Semaphore {
            m: Monitor::new(value),
            max: Some(value),
        }))
    }
    /// Takes a unit, waiting for one.
    pub fn acquire(&self) -> Result<()> {
        self.0.acquire()
    }
    /// Like `acquire`, waiting at most `timeout`; `Ok(false)` if no unit came by then.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.0.acquire_timeout(timeout)
    }
    /// Takes a unit if one is available now.
    pub fn try_acquire(&self) -> bool {
        self.0.try_acquire()
    }
    /// Takes a unit; the guard gives it back.
    pub fn guard(&self) -> Result<SemaphoreGuard<'_>> {
        self.0.guard()
    }
    /// Gives a unit back; an error above the initial value.
    pub fn release(&self) -> Result<()> {
        self.0.release()
    }
    /// Units available now.
    pub fn value(&self) -> u32 {
        self.0.value()
    }
}

/// A flag threads can wait for.
#[derive(Clone)]
pub struct Event {
    m: Arc<Monitor<bool>>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            m: Monitor::new(false),
        })
    }
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *self.m.lock() = true;
        self.m.changed.notify_all();
    }
    /// Clears the flag.
    pub fn clear(&self) {
        *self.m.lock() = false;
    }
    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *self.m.lock()
    }
    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        let g = self.m.lock();
        self.m.wait_while(g, None, |s| !*s).map(drop)
    }
    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let g = self.m.lock();
        match self.m.wait_while(g, deadline_after(timeout), |s| !*s) {
            Ok(_) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[derive(Default)]
struct CondState {
    held: bool,
    /// Who a notify may wake (the process version's algorithm).
    list: Waitlist,
}

/// A condition variable with its own lock, between threads (waits and notifies are methods
/// of the guard, as on the process version), with Python's semantics: a notify wakes at most
/// `n` of the threads waiting at that moment, and is never kept for later waiters.
#[derive(Clone)]
pub struct Condition {
    m: Arc<Monitor<CondState>>,
}

/// A thread [`Condition`]'s lock, held.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    m: &'a Monitor<CondState>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.m.lock().held = false;
        self.m.changed.notify_all();
    }
}

impl Condition {
    /// A new condition.
    pub fn new() -> Result<Condition> {
        Ok(Condition {
            m: Monitor::new(CondState::default()),
        })
    }
    fn take(&self, deadline: Option<Instant>) -> Result<ConditionGuard<'_>> {
        let g = self.m.lock();
        let mut g = self.m.wait_while(g, deadline, |s| s.held)?;
        g.held = true;
        Ok(ConditionGuard {
            m: &self.m,
            _not_send: PhantomData,
        })
    }
    /// Takes the condition's lock.
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        Ok(self.take(None)?)
    }
    /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if not free by then.
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_>> {
        match self.take(deadline_after(timeout)) {
            Ok(g) => Ok(Some(g)),
            Err(Error::Timeout) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl ConditionGuard<'_> {
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let mut g = self.m.lock();
        g.held = false;
        let ticket = g.list.join();
        self.m.changed.notify_all();
        let woken = loop {
            let timed_out = match self.m.changed.wait(g, deadline) {
                Ok(back) => {
                    g = back;
                    deadline.is_some_and(|d| Instant::now() >= d)
                }
                Err(back) => {
                    g = back;
                    true
                }
            };
            if g.list.take(ticket) {
                break true;
            }
            if timed_out {
                break g.list.leave(ticket);
            }
        };
        let mut g = self.m.wait_while(g, None, |s| s.held)?;
        g.held = true;
        Ok(woken)
    }
    /// Releases the lock, waits for a notify, re-takes the lock.
    pub fn wait(&mut self) -> Result<()> {
        self.wait_until(None).map(drop)
    }
    /// Like `wait`, at most `timeout`; false if it timed out.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_until(deadline_after(timeout))
    }
    /// Waits until `predicate` holds (checked with the lock held), at most `timeout`.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.and_then(deadline_after);
        while !predicate() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait_until(deadline)?;
        }
        Ok(true)
    }
    /// Wakes up to `n` of the threads waiting now.
    pub fn notify(&self, n: u32) {
        let mut g = self.m.lock();
        let woken = g.list.notify(n);
        drop(g);
        if woken > 0 {
            self.m.changed.notify_all();
        }
    }
    /// Wakes every waiting thread.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

struct BarrierState {
    parties: u32,
    count: u32,
    generation: u64,
    broken: bool,
    reset_gen: Option<u64>,
}

/// A barrier for a fixed number of threads, with timeouts, `abort` and `reset`.
#[derive(Clone)]
pub struct Barrier {
    m: Arc<Monitor<BarrierState>>,
}

impl Barrier {
    /// A barrier for `parties` threads.
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        Ok(Barrier {
            m: Monitor::new(BarrierState {
                parties,
                count: 0,
                generation: 0,
                broken: false,
                reset_gen: None,
            }),
        })
    }
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<u32> {
        let mut g = self.m.lock();
        if g.broken {
            return Err(Error::BrokenBarrier);
        }
        let gen = g.generation;
        let index = g.count;
        g.count += 1;
        if g.count == g.parties {
            g.count = 0;
            g.generation += 1;
            drop(g);
            self.m.changed.notify_all();
            return Ok(index);
        }
        match self
            .m
            .wait_while(g, deadline, |s| s.generation == gen && !s.broken)
        {
            Ok(g) if g.generation != gen && g.reset_gen != Some(gen) => Ok(index),
            Ok(_) => Err(Error::BrokenBarrier),
            Err(_) => {
                self.abort();
                Err(Error::BrokenBarrier)
            }
        }
    }
    /// Waits for all parties; returns the arrival index.
    pub fn wait(&self) -> Result<u32> {
        self.wait_deadline(None)
    }
    /// Like `wait`, at most `timeout`; a timeout breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_deadline(deadline_after(timeout))
    }
    /// Breaks the barrier for everyone until `reset`.
    pub fn abort(&self) {
        self.m.lock().broken = true;
        self.m.changed.notify_all();
    }
    /// Back to the initial state; threads waiting now get `BrokenBarrier`.
    pub fn reset(&self) -> Result<()> {
        let mut g = self.m.lock();
        if g.count > 0 {
            g.reset_gen = Some(g.generation);
        }
        g.count = 0;
        g.generation += 1;
        g.broken = false;
        drop(g);
        self.m.changed.notify_all();
        Ok(())
    }
    /// Number of parties.
    pub fn parties(&self) -> u32 {
        self.m.lock().parties
    }
    /// Threads waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.m.lock().count
    }
    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.m.lock().broken
    }
}
