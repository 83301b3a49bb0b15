//! `Semaphore` and `BoundedSemaphore`: counters processes take from and give back to.

use super::*;

#[repr(C)]
pub(crate) struct State {
    value: AtomicU32,
    /// 0: unbounded.
    max: AtomicU32,
    ev: EventCount,
}

/// A counter processes take from and give back to (Python's `Semaphore`). A semaphore
/// has no owner: units taken by a process that dies are not given back.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     // At most two holders at once (pass clones to processes to share it).
///     let slots = Semaphore::new(2)?;
///     let a = slots.guard()?;
///     slots.acquire()?;
///     assert!(!slots.try_acquire());
///     drop(a); // gives its unit back
///     assert!(slots.try_acquire());
///     slots.release()?;
///     slots.release()?;
///     assert_eq!(slots.value(), 2);
///     let bounded = BoundedSemaphore::new(1)?;
///     assert!(bounded.release().is_err()); // above its initial value
///     Ok(())
/// }
/// ```
pub struct Semaphore {
    shm: Shm<State>,
}

/// A [`Semaphore`] that refuses to be released above its initial value (Python's
/// `BoundedSemaphore`). Example: [`Semaphore`].
pub struct BoundedSemaphore {
    shm: Shm<State>,
}

/// Gives its unit back to the semaphore when dropped. Example: [`Semaphore`].
#[must_use = "the unit is released as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    st: &'a State,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = release(self.st);
    }
}

impl std::fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

fn try_take(st: &State) -> bool {
    let mut v = st.value.load(Ordering::SeqCst);
    while v > 0 {
        match st
            .value
            .compare_exchange(v, v - 1, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

fn take(st: &State, deadline: Option<Instant>) -> Result<()> {
    loop {
        if try_take(st) {
            return Ok(());
        }
        st.ev
            .wait_until(|| st.value.load(Ordering::SeqCst) > 0, deadline, false)?;
    }
}

fn release(st: &State) -> Result<()> {
    let max = st.max.load(Ordering::SeqCst);
    let mut v = st.value.load(Ordering::SeqCst);
    loop {
        if (max != 0 && v >= max) || v == u32::MAX {
            return Err(Error::ReleasedTooOften {
                what: "a semaphore",
            });
        }
        match st
            .value
            .compare_exchange(v, v + 1, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => break,
            Err(now) => v = now,
        }
    }
    st.ev.notify_all();
    Ok(())
}

shm_state!(State, SegmentKind::Semaphore, "Semaphore");

macro_rules! semaphore_api {
    ($ty:ident, $bounded:expr) => {
        shm_handle!($ty, State);

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("value", &self.value())
                    .finish()
            }
        }

        impl $ty {
            /// A semaphore holding `value` units.
            pub fn new(value: u32) -> Result<$ty> {
                if $bounded && value == 0 {
                    return Err(Error::InvalidArgument(
                        "a bounded semaphore needs an initial value above 0".into(),
                    ));
                }
                let shm = Shm::create(0, |st: &mut State, _| {
                    *st.value.get_mut() = value;
                    if $bounded {
                        *st.max.get_mut() = value;
                    }
                    Ok(())
                })?;
                Ok($ty { shm })
            }

            /// Takes one unit, waiting for one to be released if none is left.
            pub fn acquire(&self) -> Result<()> {
                take(self.st(), None)
            }

            /// Like `acquire`, waiting at most `timeout`; `Ok(false)` if no unit was
            /// released by then (Python's `acquire(timeout=...)`).
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                match take(self.st(), deadline_after(timeout)) {
                    Ok(()) => Ok(true),
                    Err(Error::Timeout) => Ok(false),
                    Err(e) => Err(e),
                }
            }

            /// Takes a unit if one is available now.
            pub fn try_acquire(&self) -> bool {
                try_take(self.st())
            }

            /// Takes a unit and returns a guard that gives it back when dropped.
            pub fn guard(&self) -> Result<SemaphoreGuard<'_>> {
                take(self.st(), None)?;
                Ok(SemaphoreGuard { st: self.st() })
            }

            /// Gives a unit back (from any process).
            pub fn release(&self) -> Result<()> {
                release(self.st())
            }

            /// Units currently available (Python's `get_value`).
            pub fn value(&self) -> u32 {
                self.st().value.load(Ordering::SeqCst)
            }
        }
    };
}

semaphore_api!(Semaphore, false);
semaphore_api!(BoundedSemaphore, true);
