//! Cross-process synchronisation (Python's `multiprocessing.synchronize`): `Lock`, `RLock`,
//! `Semaphore`, `BoundedSemaphore`, `Event`, `Condition` and `Barrier`.
//!
//! Each object is a small shared-memory segment; handles are cloned within a process and
//! passed to other processes as arguments of a [`Process`](crate::Process) or a pool task.
//! Locks are robust mutexes: when a process dies holding one, the next process to acquire
//! it gets [`LockError::OwnerDied`] carrying the guard, so it holds the lock and can repair
//! what the dead holder left half-updated (through `?` it becomes [`Error::OwnerDied`] and
//! the lock is released). Nothing waits forever unless asked to: every wait has a timed
//! variant, and timeouts follow Python's conventions (see the crate docs' table).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, LockError, LockResult, Result, TryLockResult};
use crate::registry::{self, TaskFn};
use crate::shm::handle::Shm;
use crate::shm::segment::SegmentKind;
use crate::sys::futex::{EventCount, Locked, RobustMutex};

/// `Instant::now() + t`, or `None` (no deadline) if that overflows.
pub(crate) use crate::sys::wait::deadline_after;

/// `$state` lives in segments of kind `$kind`, called `$what` in messages.
macro_rules! shm_state {
    ($state:ty, $kind:expr, $what:literal) => {
        // SAFETY: every object state in this module is repr(C), valid when zeroed, and shares
        // only atomics, robust mutexes, event counts and lock-protected cells (see each).
        unsafe impl crate::shm::handle::ShmState for $state {
            const KIND: crate::shm::segment::SegmentKind = $kind;
            const WHAT: &'static str = $what;
        }
    };
}

/// The handle type `$ty` over a segment holding its `$state`: `Clone`, serde (as a
/// descriptor), and `st()`.
macro_rules! shm_handle {
    ($ty:ident, $state:ty) => {
        impl Clone for $ty {
            fn clone(&self) -> Self {
                $ty {
                    shm: self.shm.clone(),
                }
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                self.shm.serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                Ok($ty {
                    shm: serde::Deserialize::deserialize(d)?,
                })
            }
        }

        impl $ty {
            fn st(&self) -> &$state {
                self.shm.state()
            }
        }
    };
}

/// Acquires `m` for the lock APIs: the guard (made by `guard`) in every case where the lock
/// is now held — inside `LockError::OwnerDied` if the previous holder died holding it —
/// `Ok(None)` if `deadline` passed first.
pub(crate) fn lock_robust<G>(
    m: &RobustMutex,
    deadline: Option<Instant>,
    guard: impl FnOnce() -> G,
) -> TryLockResult<G> {
    match m.lock(deadline) {
        Ok(Locked::Clean) => Ok(Some(guard())),
        Ok(Locked::OwnerDied) => Err(LockError::OwnerDied(guard())),
        Err(Error::Timeout) => Ok(None),
        Err(e) => Err(LockError::Failed(e)),
    }
}

/// Like [`lock_robust`] without a deadline: the guard.
pub(crate) fn lock_robust_forever<G>(m: &RobustMutex, guard: impl FnOnce() -> G) -> LockResult<G> {
    lock_robust(m, None, guard)?.ok_or(LockError::Failed(Error::Timeout))
}

/// Like [`lock_robust`], not waiting.
fn try_lock_robust<G>(m: &RobustMutex, guard: impl FnOnce() -> G) -> TryLockResult<G> {
    match m.try_lock() {
        Ok(None) => Ok(None),
        Ok(Some(Locked::Clean)) => Ok(Some(guard())),
        Ok(Some(Locked::OwnerDied)) => Err(LockError::OwnerDied(guard())),
        Err(e) => Err(LockError::Failed(e)),
    }
}

// After the macros above, which the files use.
mod barrier;
mod condition;
mod event;
mod lock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
