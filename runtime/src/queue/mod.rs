//! `Queue`, `JoinableQueue` and `SimpleQueue`: FIFO queues that any number of processes put
//! into and get from.
//!
//! A queue is one shared-memory segment: a ring buffer of encoded items, a robust lock for
//! producers and one for consumers, and futex words to sleep on. `put` encodes the item
//! straight into the ring and returns; there is no feeder thread, so an item whose `put`
//! returned is in shared memory and is delivered even if its producer exits or is killed a
//! moment later. A consumer decodes an item straight from the ring before it advances the
//! ring, so a consumer killed mid-`get` loses nothing either: the item stays for the next
//! one. A process killed while holding one of the locks does not block the others: the
//! kernel hands the lock over (robust mutex), and the ring is only ever changed by one atomic
//! store, so it is never half-updated. A queue whose consumers keep up cycles through the
//! first pages of its ring (see `WARM`), so items do not cost fresh memory.

mod ring;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use ring::{RawQueue, Wait, DEFAULT_BUFFER};

/// Options for a new queue.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     // At most 2 items waiting, in a 1 MiB ring.
///     let q: Queue<u32> = Queue::builder().maxsize(2).buffer_bytes(1 << 20).build()?;
///     q.put(&1)?;
///     q.put(&2)?;
///     assert!(matches!(q.put_nowait(&3), Err(Error::Full)));
///     assert_eq!(q.get()?, 1);
///     Ok(())
/// }
/// ```
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
    /// pages holding unread items stay resident, plus up to the first 8 MiB, which a queue
    /// whose consumers keep up reuses). Unread items may take this much before `put` blocks;
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
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn shout(q: SimpleQueue<String>, word: String) {
///     q.put(&word.to_uppercase()).unwrap();
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let q = SimpleQueue::new()?;
///     assert!(Process::spawn(shout, (q.clone(), "hi".to_string()))?.join()?.success());
///     assert_eq!(q.get()?, "HI");
///     assert!(q.empty());
///     Ok(())
/// }
/// ```
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
                self.raw.shm.serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let shm = Deserialize::deserialize(d)?;
                let raw = RawQueue::from_shm(shm).map_err(serde::de::Error::custom)?;
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
                self.raw.put_item(item, Wait::Forever, $joinable)
            }

            /// Takes the oldest item, waiting as long as it takes. `Closed` once the queue is
            /// closed and empty.
            pub fn get(&self) -> Result<T> {
                self.raw.get_item(Wait::Forever)
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
                    .put_item(item, Wait::from_timeout(timeout), $joinable)
            }

            /// Puts an item if there is room now, else fails with `Full`.
            pub fn put_nowait(&self, item: &T) -> Result<()> {
                self.raw.put_item(item, Wait::No, $joinable)
            }

            /// Like `get`, but gives up with `Empty` after `timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                self.raw.get_item(Wait::from_timeout(timeout))
            }

            /// Takes an item if one is there now, else fails with `Empty`.
            pub fn get_nowait(&self) -> Result<T> {
                self.raw.get_item(Wait::No)
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

    /// Like `join`, waiting at most `timeout`: `Ok(false)` if items were still unfinished
    /// then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        match self.raw.join(Wait::from_timeout(timeout).deadline()) {
            Ok(()) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
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
