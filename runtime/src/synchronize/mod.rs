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
use crate::shm::segment::{Segment, SegmentKind};
use crate::sys::futex::{EventCount, Locked, RobustMutex, MUTEX_SPACE};

/// `Instant::now() + t`, or `None` (no deadline) if that overflows.
pub(crate) use crate::sys::wait::deadline_after;

/// Serde and `Clone` for a handle type holding `seg: Segment` of kind `$kind`.
macro_rules! shm_handle {
    ($ty:ident, $kind:expr, $what:literal) => {
        impl Clone for $ty {
            fn clone(&self) -> Self {
                $ty {
                    seg: self.seg.clone(),
                }
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                crate::shm::fds::serialize_fd(self.seg.fd(), $what, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let fd = crate::shm::fds::deserialize_fd($what, d)?;
                let seg = Segment::attach(fd, $kind).map_err(serde::de::Error::custom)?;
                if seg.len() < crate::shm::segment::HEADER_SPACE + std::mem::size_of::<State>() {
                    return Err(serde::de::Error::custom(concat!("a truncated ", $what)));
                }
                Ok($ty { seg })
            }
        }

        impl $ty {
            fn st(&self) -> &State {
                // SAFETY: the segment holds a State after its header (made so on create,
                // checked on attach); shared fields are atomics or lock-protected.
                unsafe { &*self.seg.body().cast::<State>() }
            }

            fn create() -> Result<Segment> {
                Segment::create(
                    $kind,
                    crate::shm::segment::HEADER_SPACE + std::mem::size_of::<State>(),
                )
            }
        }
    };
}

#[repr(C, align(64))]
pub(crate) struct MutexSpace(pub(crate) [u8; MUTEX_SPACE]);

impl MutexSpace {
    pub(crate) fn mutex(&self) -> RobustMutex {
        // SAFETY: MUTEX_SPACE bytes, 64-aligned, inside a live shared mapping owned by the
        // handle that lends out `self`.
        unsafe { RobustMutex::at(self.0.as_ptr().cast_mut()) }
    }
}

/// Acquires `m` for the lock APIs: the guard (made by `guard`) in every case where the lock
/// is now held — inside `LockError::OwnerDied` if the previous holder died holding it —
/// `Ok(None)` if `deadline` passed first.
pub(crate) fn lock_robust<G>(
    m: RobustMutex,
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
pub(crate) fn lock_robust_forever<G>(m: RobustMutex, guard: impl FnOnce() -> G) -> LockResult<G> {
    lock_robust(m, None, guard)?.ok_or(LockError::Failed(Error::Timeout))
}

/// Like [`lock_robust`], not waiting.
fn try_lock_robust<G>(m: RobustMutex, guard: impl FnOnce() -> G) -> TryLockResult<G> {
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
