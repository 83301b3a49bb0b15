//! `Lock` and `RLock`: mutual exclusion across processes, robust against holders that die.

use std::marker::PhantomData;
use std::time::Duration;

use super::{deadline_after, lock_robust, lock_robust_forever, try_lock_robust};
use crate::error::{LockResult, Result, TryLockResult};
use crate::shm::handle::Shm;
use crate::shm::segment::SegmentKind;
use crate::sys::futex::RobustMutex;

/// Held while alive; releases on drop. Not `Send`: a lock is released by the thread that
/// took it. Example: [`Lock`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    m: &'a RobustMutex,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.m.unlock();
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

impl<'a> LockGuard<'a> {
    fn new(m: &'a RobustMutex) -> Self {
        LockGuard {
            m,
            _not_send: PhantomData,
        }
    }
}

macro_rules! lock_type {
    ($(#[$doc:meta])* $ty:ident, $state:ident, $kind:expr, $what:literal, $recursive:expr) => {
        /// A lock's segment holds just its mutex.
        #[repr(C)]
        pub(crate) struct $state(RobustMutex);

        $(#[$doc])*
        pub struct $ty {
            shm: Shm<$state>,
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($ty))
            }
        }

        impl $ty {
            /// A new, unlocked lock.
            pub fn new() -> Result<$ty> {
                Ok($ty {
                    shm: Shm::create(0, |st: &mut $state, _| st.0.init($recursive))?,
                })
            }

            /// Waits for the lock. [`LockError::OwnerDied`](crate::LockError::OwnerDied) (with the guard: the lock is
            /// held) if its previous holder died holding it.
            pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
                let m = &self.st().0;
                lock_robust_forever(m, || LockGuard::new(m))
            }

            /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if the lock was not
            /// free by then (Python's `acquire(timeout=...)` returning `False`).
            pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
                let m = &self.st().0;
                lock_robust(m, deadline_after(timeout), || LockGuard::new(m))
            }

            /// Takes the lock if it is free now (`Ok(None)` if not).
            pub fn try_acquire(&self) -> TryLockResult<LockGuard<'_>> {
                let m = &self.st().0;
                try_lock_robust(m, || LockGuard::new(m))
            }
        }

        shm_state!($state, $kind, $what);
        shm_handle!($ty, $state);
    };
}

lock_type!(
    /// A mutual-exclusion lock shared by processes (Python's `multiprocessing.Lock`), with
    /// an RAII guard. Acquiring it again from the thread that holds it is an error, not a
    /// deadlock.
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let lock = Lock::new()?;
    ///     {
    ///         let _held = lock.acquire()?;
    ///         assert!(lock.try_acquire()?.is_none());
    ///     }
    ///     assert!(lock.try_acquire()?.is_some());
    ///     Ok(())
    /// }
    /// ```
    Lock,
    LockState,
    SegmentKind::Lock,
    "Lock",
    false
);
lock_type!(
    /// A re-entrant lock (Python's `RLock`): the thread holding it may acquire it again;
    /// it is free once every guard is dropped.
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let lock = RLock::new()?;
    ///     let outer = lock.acquire()?;
    ///     let inner = lock.acquire()?; // the same thread: no deadlock
    ///     drop(inner);
    ///     drop(outer);
    ///     assert!(lock.try_acquire()?.is_some());
    ///     Ok(())
    /// }
    /// ```
    RLock,
    RLockState,
    SegmentKind::RLock,
    "RLock",
    true
);
