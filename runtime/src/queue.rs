//! `Queue`, `JoinableQueue` and `SimpleQueue`: FIFO queues that any number of processes put
//! into and get from.
//!
//! A queue is one shared-memory segment: a ring buffer of encoded items, a robust lock for
//! producers and one for consumers, and futex words to sleep on. `put` copies the encoded
//! item into the ring and returns; there is no feeder thread, so an item whose `put` returned
//! is in shared memory and is delivered even if its producer exits or is killed a moment
//! later. A consumer copies an item out before it advances the ring, so a consumer killed
//! mid-`get` loses nothing either: the item stays for the next one. A process killed while
//! holding one of the locks does not block the others: the kernel hands the lock over (robust
//! mutex), and the ring is only ever changed by one atomic store, so it is never half-updated.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::fds;
use crate::shm::segment::{Segment, SegmentKind};
use crate::shm::sync::{EventCount, Locked, RobustMutex, MUTEX_SPACE};

/// Default ring size: unread items may take up to this much before `put` blocks. It is
/// virtual memory: only the pages holding unread items are resident (see `PUNCH`).
const DEFAULT_BUFFER: usize = 1 << 30;
const MIN_BUFFER: usize = 64 * 1024;
const MAX_BUFFER: usize = 1 << 34;
/// Rings larger than this give their pages back to the kernel, `PUNCH` bytes at a time, as
/// soon as they have been read; smaller ones stay resident.
const PUNCH_ABOVE: usize = 8 << 20;
const PUNCH: usize = 1 << 20;
/// Where the ring starts in the segment (page-aligned, so punched ranges are whole pages).
const DATA_AT: usize = 4096;

const REC_HEADER: usize = 8;
const TAG_ITEM: u32 = 0x4d51_0001;
const TAG_JUMP: u32 = 0x4d51_0002;

/// `head` and `tail` pack a message count (high bits) with a byte position (low bits), so
/// one atomic store publishes both an item and the count `qsize` reads.
const POS_BITS: u32 = 36;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const COUNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;
/// `maxsize` may not exceed this.
const MAX_ITEMS: usize = 1 << 26;

fn pos(w: u64) -> u64 {
    w & POS_MASK
}
fn count(w: u64) -> u64 {
    w >> POS_BITS
}
fn pack(count: u64, pos: u64) -> u64 {
    ((count & COUNT_MASK) << POS_BITS) | (pos & POS_MASK)
}

#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
struct State {
    put_lock: Line<[u8; MUTEX_SPACE]>,
    get_lock: Line<[u8; MUTEX_SPACE]>,
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    /// Consumers wait here for items.
    data: Line<EventCount>,
    /// Producers wait here for room.
    space: Line<EventCount>,
    /// `JoinableQueue::join` waits here.
    joined: Line<EventCount>,
    closed: AtomicU32,
    /// A consumer is between giving pages back and publishing the new head (see `get`).
    commit_pending: AtomicU32,
    commit_head: AtomicU64,
    capacity: u64,
    /// Bytes never filled, so pages being given back are never ones a producer may be
    /// writing.
    reserve: u64,
    maxsize: u64,
    unfinished: AtomicI64,
}

const _: () = assert!(std::mem::size_of::<State>() + crate::shm::segment::HEADER_SPACE <= DATA_AT);

/// The untyped queue all three kinds share.
#[derive(Clone)]
struct RawQueue {
    seg: Segment,
}

/// How long a blocking call may wait.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

impl Wait {
    fn from_timeout(t: Duration) -> Wait {
        Instant::now()
            .checked_add(t)
            .map_or(Wait::Forever, Wait::Until)
    }
    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        }
    }
}

impl RawQueue {
    fn create(maxsize: usize, buffer: usize) -> Result<RawQueue> {
        if maxsize > MAX_ITEMS {
            return Err(Error::InvalidArgument(format!(
                "maxsize {maxsize} is over the limit of {MAX_ITEMS}"
            )));
        }
        if !(MIN_BUFFER..=MAX_BUFFER).contains(&buffer) {
            return Err(Error::InvalidArgument(format!(
                "a queue buffer of {buffer} bytes is outside {MIN_BUFFER}..={MAX_BUFFER}"
            )));
        }
        let capacity = buffer.next_power_of_two();
        let seg = Segment::create(SegmentKind::Queue, DATA_AT + capacity)?;
        let q = RawQueue { seg };
        // SAFETY: the segment is fresh, zeroed and private to this process until this
        // function returns; the fields written are plain integers.
        unsafe {
            let st = q.seg.body().cast::<State>();
            (*st).capacity = capacity as u64;
            (*st).reserve = if capacity > PUNCH_ABOVE {
                PUNCH as u64
            } else {
                0
            };
            (*st).maxsize = maxsize as u64;
        }
        q.put_lock().init(false)?;
        q.get_lock().init(false)?;
        Ok(q)
    }

    fn attach(fd: std::os::fd::OwnedFd) -> Result<RawQueue> {
        let seg = Segment::attach(fd, SegmentKind::Queue)?;
        let q = RawQueue { seg };
        let cap = q.st().capacity as usize;
        if !cap.is_power_of_two() || DATA_AT + cap > q.seg.len() {
            return Err(Error::Protocol("received a corrupted queue".into()));
        }
        Ok(q)
    }

    fn st(&self) -> &State {
        // SAFETY: the segment is at least DATA_AT bytes (checked on attach, made so on
        // create), State fits before DATA_AT, and every field shared after creation is
        // atomic or only accessed under its lock.
        unsafe { &*self.seg.body().cast::<State>() }
    }

    fn put_lock(&self) -> RobustMutex {
        // SAFETY: in bounds of the live mapping, 64-aligned; lives as long as self.
        unsafe { RobustMutex::at(self.st().put_lock.0.as_ptr().cast_mut()) }
    }

    fn get_lock(&self) -> RobustMutex {
        // SAFETY: as for put_lock.
        unsafe { RobustMutex::at(self.st().get_lock.0.as_ptr().cast_mut()) }
    }

    fn ring(&self) -> *mut u8 {
        // SAFETY: DATA_AT is within the segment (checked on attach).
        unsafe { self.seg.ptr().add(DATA_AT) }
    }

    fn capacity(&self) -> u64 {
        self.st().capacity
    }

    /// Largest encoded item accepted.
    fn max_item(&self) -> usize {
        ((self.capacity() - self.st().reserve) / 2) as usize - REC_HEADER
    }

    fn is_closed(&self) -> bool {
        self.st().closed.load(Ordering::SeqCst) != 0
    }

    fn close(&self) {
        self.st().closed.store(1, Ordering::SeqCst);
        self.st().data.0.notify_all();
        self.st().space.0.notify_all();
    }

    fn qsize(&self) -> usize {
        let st = self.st();
        let head = st.head.0.load(Ordering::Acquire);
        let tail = st.tail.0.load(Ordering::Acquire);
        (count(tail).wrapping_sub(count(head)) & COUNT_MASK) as usize
    }

    fn put(&self, bytes: &[u8], wait: Wait, joinable: bool) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if bytes.len() > self.max_item() {
            return Err(Error::InvalidArgument(format!(
                "an item of {} bytes does not fit this queue (at most {} bytes; build the \
                 queue with a larger buffer_bytes)",
                bytes.len(),
                self.max_item()
            )));
        }
        let rec = (REC_HEADER + bytes.len()).next_multiple_of(8) as u64;
        let st = self.st();
        let cap = st.capacity;
        let lock = self.put_lock();
        // A producer that died holding the lock left nothing half-done: its only visible
        // step is the final store to `tail`.
        lock.lock(wait.deadline()).map_err(|e| match e {
            Error::Timeout => Error::Full,
            e => e,
        })?;
        let placed = (|| loop {
            if self.is_closed() {
                return Err(Error::Closed);
            }
            let tail = st.tail.0.load(Ordering::Relaxed);
            let head = st.head.0.load(Ordering::Acquire);
            let used = pos(tail).wrapping_sub(pos(head)) & POS_MASK;
            let items = count(tail).wrapping_sub(count(head)) & COUNT_MASK;
            let off = pos(tail) & (cap - 1);
            // Items never wrap around the ring's end: a JUMP record skips to its start.
            let fits = |skip: u64| used + skip + rec + st.reserve <= cap;
            let skip = if off + rec > cap { cap - off } else { 0 };
            let room = fits(skip);
            let below_max = st.maxsize == 0 || items < st.maxsize;
            if room && below_max {
                return Ok((tail, off, skip));
            }
            let d = match wait {
                Wait::No => return Err(Error::Full),
                w => w.deadline(),
            };
            st.space
                .0
                .wait_until(
                    || st.head.0.load(Ordering::Acquire) != head || self.is_closed(),
                    d,
                    false,
                )
                .map_err(|_| Error::Full)?;
        })();
        let (tail, mut off, skip) = match placed {
            Ok(p) => p,
            Err(e) => {
                lock.unlock()?;
                return Err(e);
            }
        };
        let ring = self.ring();
        // SAFETY: [off, off + skip) and then [0 or off+skip, + rec) are free ring space
        // (checked against head above under the producer lock; consumers never touch bytes
        // beyond tail), and within the ring (items do not wrap).
        unsafe {
            if skip > 0 {
                write_header(ring.add(off as usize), TAG_JUMP, (skip - 8) as u32);
                off = 0;
            }
            let at = ring.add(off as usize);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.add(REC_HEADER), bytes.len());
            write_header(at, TAG_ITEM, bytes.len() as u32);
        }
        if joinable {
            st.unfinished.fetch_add(1, Ordering::SeqCst);
        }
        st.tail.0.store(
            pack(count(tail) + 1, pos(tail) + skip + rec),
            Ordering::Release,
        );
        lock.unlock()?;
        st.data.0.notify_all();
        Ok(())
    }

    fn get(&self, wait: Wait) -> Result<Vec<u8>> {
        let st = self.st();
        let cap = st.capacity;
        let lock = self.get_lock();
        let how = lock.lock(wait.deadline()).map_err(|e| match e {
            Error::Timeout => Error::Empty,
            e => e,
        })?;
        if how == Locked::OwnerDied && st.commit_pending.load(Ordering::SeqCst) != 0 {
            // The dead consumer had taken its item and was giving pages back: finish its
            // step (its item is gone with it; every other item is intact).
            st.head
                .0
                .store(st.commit_head.load(Ordering::SeqCst), Ordering::Release);
            st.commit_pending.store(0, Ordering::SeqCst);
        }
        let r = (|| loop {
            let head = st.head.0.load(Ordering::Relaxed);
            if pos(st.tail.0.load(Ordering::Acquire)) == pos(head) {
                if self.is_closed() {
                    return Err(Error::Closed);
                }
                let d = match wait {
                    Wait::No => return Err(Error::Empty),
                    w => w.deadline(),
                };
                st.data
                    .0
                    .wait_until(
                        || pos(st.tail.0.load(Ordering::Acquire)) != pos(head) || self.is_closed(),
                        d,
                        true,
                    )
                    .map_err(|_| Error::Empty)?;
                continue;
            }
            let off = pos(head) & (cap - 1);
            // SAFETY: bytes between head and tail were published by a producer (Acquire on
            // tail above) and are not touched by producers until head passes them.
            let (tag, len) = unsafe { read_header(self.ring().add(off as usize)) };
            let (next, item) = match tag {
                TAG_JUMP if off + REC_HEADER as u64 + u64::from(len) == cap => {
                    (pack(count(head), pos(head) + cap - off), None)
                }
                TAG_ITEM if off + REC_HEADER as u64 + u64::from(len) <= cap => {
                    let mut v = Vec::with_capacity(len as usize);
                    // SAFETY: as above; the record lies within the ring (checked).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            self.ring().add(off as usize + REC_HEADER),
                            v.as_mut_ptr(),
                            len as usize,
                        );
                        v.set_len(len as usize);
                    }
                    let rec = (REC_HEADER as u64 + u64::from(len)).next_multiple_of(8);
                    (pack(count(head) + 1, pos(head) + rec), Some(v))
                }
                _ => {
                    return Err(Error::Protocol(format!(
                        "queue memory corrupted at offset {off} (tag {tag:#x}, length {len})"
                    )))
                }
            };
            self.release_pages(
                off,
                off + (pos(next).wrapping_sub(pos(head)) & POS_MASK),
                next,
            );
            st.head.0.store(next, Ordering::Release);
            st.commit_pending.store(0, Ordering::SeqCst);
            if let Some(v) = item {
                return Ok(v);
            }
        })();
        lock.unlock()?;
        st.space.0.notify_all();
        r
    }

    /// Gives back to the kernel the whole `PUNCH` chunks of `[from, to)` (ring offsets just
    /// read). Done before `head` moves past them, so no producer can be writing there (and
    /// producers never fill the last `reserve` bytes, so the chunk `head` is in is never one
    /// they may reuse); `commit_head` lets the next consumer finish the step if this one dies
    /// in the middle.
    fn release_pages(&self, from: u64, to: u64, next_head: u64) {
        let st = self.st();
        if st.reserve == 0 {
            return;
        }
        let start = from as usize / PUNCH * PUNCH;
        let end = to as usize / PUNCH * PUNCH;
        if start >= end {
            return;
        }
        st.commit_head.store(next_head, Ordering::SeqCst);
        st.commit_pending.store(1, Ordering::SeqCst);
        use rustix::fs::FallocateFlags;
        // Failure only means the pages stay resident.
        let _ = rustix::fs::fallocate(
            self.seg.as_fd(),
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            (DATA_AT + start) as u64,
            (end - start) as u64,
        );
    }

    fn task_done(&self) -> Result<()> {
        let st = self.st();
        let mut cur = st.unfinished.load(Ordering::SeqCst);
        loop {
            if cur <= 0 {
                return Err(Error::InvalidArgument(
                    "task_done() called more times than there were items".into(),
                ));
            }
            match st
                .unfinished
                .compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            st.joined.0.notify_all();
        }
        Ok(())
    }

    fn join(&self, deadline: Option<Instant>) -> Result<()> {
        let st = self.st();
        st.joined.0.wait_until(
            || st.unfinished.load(Ordering::SeqCst) <= 0,
            deadline,
            false,
        )
    }
}

/// # Safety
/// `at` must point to 8 writable bytes of the ring.
unsafe fn write_header(at: *mut u8, tag: u32, len: u32) {
    let h = (u64::from(tag) << 32) | u64::from(len);
    std::ptr::write_volatile(at.cast::<u64>(), h);
}

/// # Safety
/// `at` must point to 8 readable bytes of the ring, 8-aligned.
unsafe fn read_header(at: *const u8) -> (u32, u32) {
    let h = std::ptr::read_volatile(at.cast::<u64>());
    ((h >> 32) as u32, h as u32)
}

fn encode<T: Serialize>(item: &T) -> Result<Vec<u8>> {
    bincode::serialize(item).map_err(|e| Error::serialization("a queue item", e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::serialization("a queue item", e))
}

/// Options for a new queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueBuilder {
    maxsize: usize,
    buffer: usize,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            maxsize: 0,
            buffer: DEFAULT_BUFFER,
        }
    }
}

impl QueueBuilder {
    /// At most this many items at a time; `put` blocks (or fails with `Full`) beyond.
    /// 0, the default, means no limit on the count.
    pub fn maxsize(mut self, n: usize) -> Self {
        self.maxsize = n;
        self
    }

    /// Size of the ring the encoded items live in (default 1 GiB of *virtual* memory; only
    /// pages in use are resident). Unread items may take this much before `put` blocks;
    /// one item may take half of it.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Creates the queue.
    pub fn build<T>(self) -> Result<Queue<T>> {
        Ok(Queue {
            raw: RawQueue::create(self.maxsize, self.buffer)?,
            _t: PhantomData,
        })
    }

    /// Creates a joinable queue.
    pub fn build_joinable<T>(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            raw: RawQueue::create(self.maxsize, self.buffer)?,
            _t: PhantomData,
        })
    }
}

/// A FIFO queue shared by any number of processes (Python's `multiprocessing.Queue`).
///
/// Create it in one process and pass clones to others as arguments of a
/// [`Process`](crate::Process) or of pool tasks (also allowed here, unlike Python); every
/// process can put and get. Items are encoded with serde; `put` takes the item by reference,
/// so a `put` that fails (full, closed, not serializable) leaves it with the caller.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn produce(q: Queue<u32>, n: u32) {
///     for i in 0..n {
///         q.put(&i).unwrap();
///     }
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let q = Queue::new()?;
///     let mut p = Process::new(produce, (q.clone(), 3))?;
///     p.start()?;
///     let got: Vec<u32> = (0..3).map(|_| q.get()).collect::<Result<_, _>>()?;
///     p.join()?;
///     assert_eq!(got, [0, 1, 2]);
///     Ok(())
/// }
/// ```
pub struct Queue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

/// A [`Queue`] whose consumers confirm each item with `task_done`, so that `join` can wait
/// until every item put has been processed (Python's `JoinableQueue`).
pub struct JoinableQueue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

/// The plain queue of Python's `SimpleQueue`: `put`, `get`, `empty` and `close`, no limit.
pub struct SimpleQueue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

macro_rules! queue_common {
    ($ty:ident, $joinable:expr) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    raw: self.raw.clone(),
                    _t: PhantomData,
                }
            }
        }

        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("qsize", &self.raw.qsize())
                    .field("closed", &self.raw.is_closed())
                    .finish()
            }
        }

        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                fds::serialize_fd(self.raw.seg.fd(), stringify!($ty), s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let fd = fds::deserialize_fd(stringify!($ty), d)?;
                let raw = RawQueue::attach(fd).map_err(serde::de::Error::custom)?;
                Ok($ty {
                    raw,
                    _t: PhantomData,
                })
            }
        }

        impl<T: Serialize + DeserializeOwned> $ty<T> {
            /// Puts an item, waiting for room if the queue is full. `Closed` once the queue
            /// is closed.
            pub fn put(&self, item: &T) -> Result<()> {
                self.raw.put(&encode(item)?, Wait::Forever, $joinable)
            }

            /// Takes the oldest item, waiting as long as it takes. `Closed` once the queue is
            /// closed and empty.
            pub fn get(&self) -> Result<T> {
                decode(&self.raw.get(Wait::Forever)?)
            }

            /// Whether the queue holds no items (a snapshot: other processes may change it).
            pub fn empty(&self) -> bool {
                self.raw.qsize() == 0
            }

            /// Closes the queue for every process: later puts fail with `Closed`; gets return
            /// the items still queued, then `Closed` (consumers waiting in `get` wake up).
            pub fn close(&self) {
                self.raw.close();
            }

            /// Whether some process closed the queue.
            pub fn is_closed(&self) -> bool {
                self.raw.is_closed()
            }
        }
    };
}

queue_common!(Queue, false);
queue_common!(JoinableQueue, true);
queue_common!(SimpleQueue, false);

macro_rules! queue_full_api {
    ($ty:ident, $joinable:expr) => {
        impl<T: Serialize + DeserializeOwned> $ty<T> {
            /// Like `put`, but gives up with `Full` after `timeout`.
            pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
                self.raw
                    .put(&encode(item)?, Wait::from_timeout(timeout), $joinable)
            }

            /// Puts an item if there is room now, else fails with `Full`.
            pub fn put_nowait(&self, item: &T) -> Result<()> {
                self.raw.put(&encode(item)?, Wait::No, $joinable)
            }

            /// Like `get`, but gives up with `Empty` after `timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                decode(&self.raw.get(Wait::from_timeout(timeout))?)
            }

            /// Takes an item if one is there now, else fails with `Empty`.
            pub fn get_nowait(&self) -> Result<T> {
                decode(&self.raw.get(Wait::No)?)
            }

            /// Number of items in the queue (a snapshot).
            pub fn qsize(&self) -> usize {
                self.raw.qsize()
            }

            /// Whether the queue holds `maxsize` items (never, without a maxsize).
            pub fn full(&self) -> bool {
                let max = self.raw.st().maxsize;
                max != 0 && self.raw.qsize() as u64 >= max
            }
        }
    };
}

queue_full_api!(Queue, false);
queue_full_api!(JoinableQueue, true);

impl<T> Queue<T> {
    /// A queue without a limit on the number of items.
    pub fn new() -> Result<Queue<T>> {
        QueueBuilder::default().build()
    }

    /// A queue holding at most `maxsize` items (0: no limit).
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        QueueBuilder::default().maxsize(maxsize).build()
    }
}

impl Queue<()> {
    /// Options for a new queue: maxsize and buffer size. The item type is given to
    /// [`QueueBuilder::build`].
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue without a limit on the number of items.
    pub fn new() -> Result<JoinableQueue<T>> {
        QueueBuilder::default().build_joinable()
    }

    /// A joinable queue holding at most `maxsize` items (0: no limit).
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>> {
        QueueBuilder::default().maxsize(maxsize).build_joinable()
    }

    /// Marks one item taken with `get` as processed. An error if called more times than
    /// items were put.
    pub fn task_done(&self) -> Result<()> {
        self.raw.task_done()
    }

    /// Waits until every item put has been marked done with `task_done`.
    pub fn join(&self) -> Result<()> {
        self.raw.join(None)
    }

    /// Like `join`, but gives up with `Timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.raw.join(Wait::from_timeout(timeout).deadline())
    }
}

impl<T> SimpleQueue<T> {
    /// A new simple queue.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            raw: RawQueue::create(0, DEFAULT_BUFFER)?,
            _t: PhantomData,
        })
    }
}
