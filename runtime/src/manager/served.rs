//! Queues, locks, semaphores, events, conditions, barriers, values and namespaces held by a
//! manager (Python's `manager.Queue()`, `manager.Lock()`, ...): the same methods and
//! timeouts as the local types, usable from any process or machine that reaches the manager.
//!
//! A blocking call waits on the server, on a connection of its own: other threads of the
//! same process go on using the manager meanwhile. Locks belong to a thread of a process;
//! when the process dies (its connections close), the server releases its locks, and the
//! next acquirer gets [`LockError::OwnerDied`], as with a local lock.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::{
    boolean, dec, dec_opt, done, done_or, enc, failure, len, proxy_common, tag_of, unexpected,
    until_swapped, Handle, Marker,
};
use super::messages::{
    CellOp, Failure, NamespaceOp, Owner, QueueOp, Request, Response, SyncOp, Wait,
};
use crate::error::{Error, LockError, LockResult, Result, TryLockResult};

/// A wait of at most `timeout`.
fn at_most(timeout: Duration) -> Wait {
    Some(timeout)
}

impl Handle {
    fn queue(&self, op: QueueOp, wait: Wait) -> Result<Response> {
        self.client
            .call_waiting(&Request::Queue { id: self.id, op }, wait)
    }

    fn sync(&self, op: SyncOp, wait: Wait) -> Result<Response> {
        self.client
            .call_waiting(&Request::Sync { id: self.id, op }, wait)
    }

    /// A queue operation that does not wait.
    fn queue_now(&self, op: QueueOp) -> Result<Response> {
        self.queue(op, Some(Duration::ZERO))
    }

    /// A lock, semaphore, event or barrier operation that does not wait.
    fn sync_now(&self, op: SyncOp) -> Result<Response> {
        self.sync(op, Some(Duration::ZERO))
    }
}

macro_rules! queue_proxy {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        pub struct $ty<T> {
            h: Handle,
            _t: Marker<T>,
        }

        proxy_common!($ty<T>, $kind);

        impl<T: Serialize + DeserializeOwned> $ty<T> {
            fn put_waiting(&self, item: &T, wait: Wait) -> Result<()> {
                done_or(self.h.queue(QueueOp::Put(enc(item)?, wait), wait)?, "a queue")
            }

            fn get_waiting(&self, wait: Wait) -> Result<T> {
                match self.h.queue(QueueOp::Get(wait), wait)? {
                    Response::Value(Some(item)) => dec(&item),
                    Response::Failed(f) => Err(failure(f, "a queue")),
                    other => Err(unexpected(other)),
                }
            }

            /// Puts an item, waiting for room if the queue is full. `Closed` once the queue
            /// is closed.
            pub fn put(&self, item: &T) -> Result<()> {
                self.put_waiting(item, None)
            }

            /// Like `put`, but gives up with `Full` after `timeout`.
            pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
                self.put_waiting(item, at_most(timeout))
            }

            /// Puts an item if there is room now, else fails with `Full`.
            pub fn put_nowait(&self, item: &T) -> Result<()> {
                self.put_waiting(item, Some(Duration::ZERO))
            }

            /// Takes the oldest item, waiting as long as it takes. `Closed` once the queue is
            /// closed and empty.
            pub fn get(&self) -> Result<T> {
                self.get_waiting(None)
            }

            /// Like `get`, but gives up with `Empty` after `timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                self.get_waiting(at_most(timeout))
            }

            /// Takes an item if one is there now, else fails with `Empty`.
            pub fn get_nowait(&self) -> Result<T> {
                self.get_waiting(Some(Duration::ZERO))
            }

            /// Number of items in the queue (a snapshot).
            pub fn qsize(&self) -> Result<usize> {
                len(self.h.queue_now(QueueOp::Size)?)
            }

            /// Whether the queue holds no items (a snapshot).
            pub fn empty(&self) -> Result<bool> {
                Ok(self.qsize()? == 0)
            }

            /// Whether the queue holds `maxsize` items (never, without a maxsize).
            pub fn full(&self) -> Result<bool> {
                boolean(self.h.queue_now(QueueOp::Full)?)
            }

            /// Closes the queue for every process: later puts fail with `Closed`; gets
            /// return the items still queued, then `Closed` (waiting consumers wake up).
            pub fn close(&self) -> Result<()> {
                done(self.h.queue_now(QueueOp::Close)?)
            }

            /// Whether some process closed the queue.
            pub fn is_closed(&self) -> Result<bool> {
                boolean(self.h.queue_now(QueueOp::IsClosed)?)
            }
        }
    };
}

queue_proxy!(
    /// A FIFO queue held by a [`Manager`](crate::Manager) (Python's `manager.Queue()`): any
    /// number of processes, on this machine or others, put and get.
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[pool_task]
    /// fn produce(q: QueueProxy<u32>, n: u32) {
    ///     for i in 0..n {
    ///         q.put(&i).unwrap();
    ///     }
    /// }
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let m = Manager::new()?;
    ///     let q = m.queue::<u32>()?;
    ///     let p = Process::spawn(produce, (q.clone(), 3))?;
    ///     let got: Vec<u32> = (0..3).map(|_| q.get()).collect::<multiproc::Result<_>>()?;
    ///     assert_eq!(got, [0, 1, 2]);
    ///     p.join()?;
    ///     Ok(())
    /// }
    /// ```
    QueueProxy,
    "queue"
);
queue_proxy!(
    /// A [`QueueProxy`] whose consumers mark items done, so that producers can wait for all
    /// of them with `join` (Python's `manager.JoinableQueue()`).
    JoinableQueueProxy,
    "joinable queue"
);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    /// Marks one item taken by `get` as done; `ReleasedTooOften` if every item is.
    pub fn task_done(&self) -> Result<()> {
        done_or(
            self.h.queue_now(QueueOp::TaskDone)?,
            "a joinable queue's task_done",
        )
    }

    /// Waits until every item put was marked done.
    pub fn join(&self) -> Result<()> {
        self.join_waiting(None).map(|_| ())
    }

    /// Like `join`, at most `timeout`: false if items were still not done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_waiting(at_most(timeout))
    }

    fn join_waiting(&self, wait: Wait) -> Result<bool> {
        boolean(self.h.queue(QueueOp::Join(wait), wait)?)
    }
}

/// Held while alive; releases the manager lock on drop (a request to the manager: call
/// [`release`](LockGuardProxy::release) to see its error, if any). Not `Send`: a lock is
/// released by the thread that took it. Example: [`LockProxy`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuardProxy<'a> {
    h: &'a Handle,
    owner: Owner,
    held: bool,
    _not_send: PhantomData<*const ()>,
}

impl LockGuardProxy<'_> {
    /// Releases the lock now, reporting whether the manager did.
    pub fn release(mut self) -> Result<()> {
        self.held = false;
        release(self.h, self.owner)
    }
}

fn release(h: &Handle, owner: Owner) -> Result<()> {
    done_or(h.sync_now(SyncOp::Release(owner))?, "a manager lock")
}

impl Drop for LockGuardProxy<'_> {
    fn drop(&mut self) {
        if self.held {
            let _ = release(self.h, self.owner);
        }
    }
}

impl std::fmt::Debug for LockGuardProxy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuardProxy")
    }
}

/// Takes a lock (a `Lock`, `RLock`, or a condition's), waiting at most `wait`: the owner
/// that holds it, `None` if it was not free in time, or the error; `Err(Ok(owner))` if it
/// was taken back from a holder that died.
fn acquire(h: &Handle, wait: Wait) -> std::result::Result<Option<Owner>, LockError<Owner>> {
    let owner = h.client.owner()?;
    match h.sync(SyncOp::Acquire(owner, wait), wait)? {
        Response::Acquired { owner_died: false } => Ok(Some(owner)),
        Response::Acquired { owner_died: true } => Err(LockError::OwnerDied(owner)),
        Response::Failed(Failure::Timeout) => Ok(None),
        Response::Failed(f) => Err(LockError::Failed(failure(f, "a manager lock"))),
        other => Err(LockError::Failed(unexpected(other))),
    }
}

/// The outcome of [`acquire`] with a guard made for its owner.
fn guarded<G>(
    r: std::result::Result<Option<Owner>, LockError<Owner>>,
    guard: impl Fn(Owner) -> G,
) -> TryLockResult<G> {
    match r {
        Ok(o) => Ok(o.map(guard)),
        Err(LockError::OwnerDied(o)) => Err(LockError::OwnerDied(guard(o))),
        Err(LockError::Failed(e)) => Err(LockError::Failed(e)),
    }
}

/// A waited-for lock is always taken (or fails).
fn taken<G>(r: TryLockResult<G>) -> LockResult<G> {
    match r {
        Ok(Some(g)) => Ok(g),
        Ok(None) => Err(LockError::Failed(Error::Timeout)),
        Err(e) => Err(e),
    }
}

macro_rules! lock_proxy {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        pub struct $ty {
            h: Handle,
            _t: Marker<()>,
        }

        proxy_common!($ty, $kind);

        impl $ty {
            fn guard(&self, owner: Owner) -> LockGuardProxy<'_> {
                LockGuardProxy {
                    h: &self.h,
                    owner,
                    held: true,
                    _not_send: PhantomData,
                }
            }

            /// Waits for the lock. [`LockError::OwnerDied`] (with the guard: the lock is
            /// held) if its previous holder's process died holding it.
            pub fn acquire(&self) -> LockResult<LockGuardProxy<'_>> {
                taken(guarded(acquire(&self.h, None), |o| self.guard(o)))
            }

            /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if the lock was not
            /// free by then.
            pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<LockGuardProxy<'_>> {
                guarded(acquire(&self.h, at_most(timeout)), |o| self.guard(o))
            }

            /// Takes the lock if it is free now (`Ok(None)` if not).
            pub fn try_acquire(&self) -> TryLockResult<LockGuardProxy<'_>> {
                guarded(acquire(&self.h, Some(Duration::ZERO)), |o| self.guard(o))
            }

            /// Whether some thread holds the lock (a snapshot).
            pub fn locked(&self) -> Result<bool> {
                boolean(self.h.sync_now(SyncOp::Locked)?)
            }
        }
    };
}

lock_proxy!(
    /// A lock held by a [`Manager`](crate::Manager) (Python's `manager.Lock()`), with an RAII
    /// guard. Taking it again from the thread that holds it is `AlreadyHeld`, not a
    /// deadlock.
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let m = Manager::new()?;
    ///     let lock = m.lock()?;
    ///     {
    ///         let _held = lock.acquire()?;
    ///         assert!(lock.locked()?);
    ///     }
    ///     assert!(!lock.locked()?);
    ///     Ok(())
    /// }
    /// ```
    LockProxy,
    "lock"
);
lock_proxy!(
    /// A recursive lock held by a [`Manager`](crate::Manager) (Python's `manager.RLock()`):
    /// the thread holding it may take it again, and holds it until every guard is dropped.
    RLockProxy,
    "rlock"
);

macro_rules! semaphore_proxy {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        pub struct $ty {
            h: Handle,
            _t: Marker<()>,
        }

        proxy_common!($ty, $kind);

        impl $ty {
            fn down(&self, wait: Wait) -> Result<bool> {
                match self.h.sync(SyncOp::Down(wait), wait)? {
                    Response::Done => Ok(true),
                    Response::Failed(Failure::Timeout) => Ok(false),
                    other => Err(unexpected(other)),
                }
            }

            /// Decrements the value, waiting while it is zero.
            pub fn acquire(&self) -> Result<()> {
                self.down(None).map(|_| ())
            }

            /// Like `acquire`, at most `timeout`: false if the value stayed zero.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                self.down(at_most(timeout))
            }

            /// Decrements the value if it is above zero now.
            pub fn try_acquire(&self) -> Result<bool> {
                self.down(Some(Duration::ZERO))
            }

            /// Increments the value, waking a waiter.
            pub fn release(&self) -> Result<()> {
                done_or(
                    self.h.sync_now(SyncOp::Up)?,
                    "a bounded semaphore",
                )
            }

            /// The value now (a snapshot).
            pub fn value(&self) -> Result<u32> {
                Ok(len(self.h.sync_now(SyncOp::Value)?)? as u32)
            }
        }
    };
}

semaphore_proxy!(
    /// A semaphore held by a [`Manager`](crate::Manager) (Python's `manager.Semaphore()`).
    SemaphoreProxy,
    "semaphore"
);
semaphore_proxy!(
    /// A semaphore held by a [`Manager`](crate::Manager) that cannot be released above its
    /// starting value: such a release is `ReleasedTooOften` (Python's
    /// `manager.BoundedSemaphore()`).
    BoundedSemaphoreProxy,
    "bounded semaphore"
);

/// An event held by a [`Manager`](crate::Manager) (Python's `manager.Event()`).
pub struct EventProxy {
    h: Handle,
    _t: Marker<()>,
}

proxy_common!(EventProxy, "event");

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        done(self.h.sync_now(SyncOp::Set)?)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        done(self.h.sync_now(SyncOp::Clear)?)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        boolean(self.h.sync_now(SyncOp::IsSet)?)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        boolean(self.h.sync(SyncOp::WaitSet(None), None)?).map(|_| ())
    }

    /// Like `wait`, at most `timeout`: whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let wait = at_most(timeout);
        boolean(self.h.sync(SyncOp::WaitSet(wait), wait)?)
    }
}

/// A condition variable held by a [`Manager`](crate::Manager), with its own recursive lock
/// (Python's `manager.Condition()`). Take the lock with `acquire`; wait and notify through
/// the guard. A notify with nobody waiting is not kept for later waiters, as in Python.
pub struct ConditionProxy {
    h: Handle,
    _t: Marker<()>,
}

proxy_common!(ConditionProxy, "condition");

/// The lock of a [`ConditionProxy`], held; released on drop. Not `Send`.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let m = Manager::new()?;
///     let cond = m.condition()?;
///     let ready = m.value(&false)?;
///     std::thread::scope(|s| {
///         s.spawn(|| {
///             let g = cond.acquire().unwrap();
///             ready.set(&true).unwrap();
///             g.notify_all().unwrap();
///         });
///         let mut g = cond.acquire().unwrap();
///         // Checks first: a notify sent before this wait is not missed.
///         assert!(g.wait_for(|| ready.get().unwrap(), None).unwrap());
///     });
///     Ok(())
/// }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuardProxy<'a> {
    lock: LockGuardProxy<'a>,
}

impl std::fmt::Debug for ConditionGuardProxy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConditionGuardProxy")
    }
}

impl ConditionProxy {
    fn guard(&self, owner: Owner) -> ConditionGuardProxy<'_> {
        ConditionGuardProxy {
            lock: LockGuardProxy {
                h: &self.h,
                owner,
                held: true,
                _not_send: PhantomData,
            },
        }
    }

    /// Takes the condition's lock. `OwnerDied` (with the guard) if its holder died.
    pub fn acquire(&self) -> LockResult<ConditionGuardProxy<'_>> {
        taken(guarded(acquire(&self.h, None), |o| self.guard(o)))
    }

    /// Like `acquire`, at most `timeout` (`Ok(None)` if not free by then).
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuardProxy<'_>> {
        guarded(acquire(&self.h, at_most(timeout)), |o| self.guard(o))
    }
}

impl ConditionGuardProxy<'_> {
    fn wait_waiting(&mut self, wait: Wait) -> Result<bool> {
        let l = &self.lock;
        match l.h.sync(SyncOp::CondWait(l.owner, wait), wait)? {
            Response::Bool(notified) => Ok(notified),
            Response::Failed(f) => Err(failure(f, "a manager condition")),
            other => Err(unexpected(other)),
        }
    }

    /// Releases the lock, waits for a notify, takes the lock back. `OwnerDied` (the lock
    /// held again) if a process died holding it meanwhile.
    pub fn wait(&mut self) -> Result<()> {
        self.wait_waiting(None).map(|_| ())
    }

    /// Like `wait`, at most `timeout` for the notify: false if none came.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_waiting(at_most(timeout))
    }

    /// Waits until `predicate` is true (checked with the lock held, before the first wait
    /// and after every wake-up), at most `timeout` if given. Returns its last value.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        while !predicate() {
            match deadline {
                None => self.wait()?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
        Ok(true)
    }

    /// Wakes up to `n` of the waiters now.
    pub fn notify(&self, n: u32) -> Result<()> {
        let l = &self.lock;
        done_or(
            l.h.sync_now(SyncOp::Notify(l.owner, n))?,
            "a manager condition",
        )
    }

    /// Wakes every waiter now.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }

    /// Releases the lock now, reporting whether the manager did.
    pub fn release(self) -> Result<()> {
        self.lock.release()
    }
}

/// A barrier held by a [`Manager`](crate::Manager) (Python's `manager.Barrier(parties)`).
/// A party that times out, or whose process dies while waiting, breaks it for all.
pub struct BarrierProxy {
    h: Handle,
    _t: Marker<()>,
}

proxy_common!(BarrierProxy, "barrier");

impl BarrierProxy {
    fn wait_waiting(&self, wait: Wait) -> Result<u32> {
        let owner = self.h.client.owner()?;
        match self.h.sync(SyncOp::BarrierWait(owner, wait), wait)? {
            Response::Len(i) => Ok(i as u32),
            Response::Failed(f) => Err(failure(f, "a manager barrier")),
            other => Err(unexpected(other)),
        }
    }

    /// Waits for all parties; returns this party's arrival index (0 to `parties - 1`).
    /// `BrokenBarrier` if it is or becomes broken.
    pub fn wait(&self) -> Result<u32> {
        self.wait_waiting(None)
    }

    /// Like `wait`, at most `timeout`; a timeout breaks the barrier (`BrokenBarrier`).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_waiting(at_most(timeout))
    }

    /// Breaks the barrier: every waiter gets `BrokenBarrier`, now and until `reset`.
    pub fn abort(&self) -> Result<()> {
        done(self.h.sync_now(SyncOp::Abort)?)
    }

    /// Makes the barrier whole and empty; parties waiting now get `BrokenBarrier`.
    pub fn reset(&self) -> Result<()> {
        done(self.h.sync_now(SyncOp::Reset)?)
    }

    /// How many parties it waits for.
    pub fn parties(&self) -> Result<u32> {
        Ok(len(self.h.sync_now(SyncOp::Parties)?)? as u32)
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(len(self.h.sync_now(SyncOp::Waiting)?)? as u32)
    }

    /// Whether it is broken.
    pub fn broken(&self) -> Result<bool> {
        boolean(self.h.sync_now(SyncOp::Broken)?)
    }
}

/// One value of any serde type held by a [`Manager`](crate::Manager) (Python's
/// `manager.Value(typecode, value)`).
pub struct ValueProxy<T> {
    h: Handle,
    _t: Marker<T>,
}

proxy_common!(ValueProxy<T>, "value");

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    fn call(&self, op: CellOp) -> Result<Response> {
        self.h.client.call(&Request::Cell { id: self.h.id, op })
    }

    /// The value now.
    pub fn get(&self) -> Result<T> {
        dec_opt(self.call(CellOp::Get)?)?
            .ok_or_else(|| Error::Protocol("a manager value was missing".into()))
    }

    /// Replaces the value.
    pub fn set(&self, value: &T) -> Result<()> {
        done(self.call(CellOp::Set(enc(value)?))?)
    }

    /// Replaces the value, returning the one before, in one step.
    pub fn swap(&self, value: &T) -> Result<T> {
        dec_opt(self.call(CellOp::Swap(enc(value)?))?)?
            .ok_or_else(|| Error::Protocol("a manager value was missing".into()))
    }

    /// Replaces the value by `f` of it, atomically: `f` runs here on a snapshot, and the
    /// server takes its result only if the value is still that snapshot (else `f` runs
    /// again on the new value). Returns the new value. After 10,000 changes by others in a
    /// row it gives up with `Timeout`.
    pub fn update(&self, mut f: impl FnMut(&T) -> T) -> Result<T> {
        until_swapped(|| {
            let Response::Value(Some(now)) = self.call(CellOp::Get)? else {
                return Err(Error::Protocol("a manager value was missing".into()));
            };
            let new = f(&dec(&now)?);
            Ok(boolean(self.call(CellOp::ReplaceIf(now, enc(&new)?))?)?.then_some(new))
        })
    }
}

/// Named attributes of any serde types held by a [`Manager`](crate::Manager) (Python's
/// `manager.Namespace()`, whose `ns.x = 1` is `ns.set("x", &1)` here). Each attribute
/// remembers its type: reading it as another type is an error, not garbage.
pub struct NamespaceProxy {
    h: Handle,
    _t: Marker<()>,
}

proxy_common!(NamespaceProxy, "namespace");

impl NamespaceProxy {
    fn call(&self, op: NamespaceOp) -> Result<Response> {
        self.h
            .client
            .call(&Request::Namespace { id: self.h.id, op })
    }

    /// The attribute `name`, if set. `InvalidArgument` if it holds another type than `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.call(NamespaceOp::Get(name.to_owned()))? {
            Response::Tagged(None) => Ok(None),
            Response::Tagged(Some((tag, v))) if tag == tag_of::<T>("attribute") => {
                dec(&v).map(Some)
            }
            Response::Tagged(Some(_)) => Err(Error::InvalidArgument(format!(
                "namespace attribute `{name}` holds another type than {}",
                std::any::type_name::<T>()
            ))),
            other => Err(unexpected(other)),
        }
    }

    /// Sets the attribute `name` (to a value of any type).
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let op = NamespaceOp::Set(name.to_owned(), tag_of::<T>("attribute"), enc(value)?);
        done(self.call(op)?)
    }

    /// Removes the attribute `name`: whether it was set.
    pub fn remove(&self, name: &str) -> Result<bool> {
        boolean(self.call(NamespaceOp::Remove(name.to_owned()))?)
    }

    /// The names of the attributes set, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        match self.call(NamespaceOp::Names)? {
            Response::Names(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}
