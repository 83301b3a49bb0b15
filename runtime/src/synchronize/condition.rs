//! `Condition`: a condition variable with its own lock, with Python's notify semantics.

use super::*;
use crate::shm::waitlist::Waitlist;

#[repr(C)]
pub(crate) struct State {
    lock: RobustMutex,
    ev: EventCount,
    /// Who a notify may wake; only touched with `lock` held.
    list: std::cell::UnsafeCell<Waitlist>,
}

impl State {
    /// # Safety
    /// The caller holds `lock`, and drops the reference before releasing it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn list(&self) -> &mut Waitlist {
        // SAFETY: the condition's lock serialises every access (caller's contract).
        unsafe { &mut *self.list.get() }
    }
}

/// A condition variable with its own lock (Python's `Condition`): wait for a state
/// change that other processes announce with `notify`. Waiting and notifying need the
/// lock held, which the types enforce: they are methods of the guard.
///
/// Python's semantics: `notify(n)` wakes at most `n` of the processes (or threads)
/// waiting *at that moment*, oldest first; a notify with nobody waiting is lost, and a
/// process that starts waiting later, the notifier included, never consumes it.
///
/// ```
/// use multiproc::prelude::*;
/// use std::time::Duration;
///
/// #[pool_task]
/// fn produce(cond: Condition, ready: Value<bool>) {
///     let g = cond.acquire().unwrap();
///     ready.set(true).unwrap();
///     g.notify_all();
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let cond = Condition::new()?;
///     let ready = Value::new(false)?;
///     let mut g = cond.acquire()?;
///     let p = Process::spawn(produce, (cond.clone(), ready.clone()))?;
///     // The predicate is checked under the lock, so a notify before the wait is not missed.
///     let ok = g.wait_for(|| ready.get().unwrap_or(false), Some(Duration::from_secs(60)))?;
///     assert!(ok);
///     drop(g);
///     assert!(p.join()?.success());
///     Ok(())
/// }
/// ```
pub struct Condition {
    shm: Shm<State>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Condition")
    }
}

shm_state!(State, SegmentKind::Condition, "Condition");
shm_handle!(Condition, State);

/// The condition's lock, held; waits and notifies go through it. Example: [`Condition`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cond.st().lock.unlock();
    }
}

impl std::fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConditionGuard")
    }
}

impl Condition {
    /// A new condition.
    pub fn new() -> Result<Condition> {
        let shm = Shm::create(0, |st: &mut State, _| {
            *st.list.get_mut() = Waitlist::default();
            st.lock.init(false)
        })?;
        Ok(Condition { shm })
    }

    /// Takes the condition's lock ([`LockError::OwnerDied`], with the guard, if its
    /// previous holder died holding it).
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        lock_robust_forever(&self.st().lock, || self.guard())
    }

    /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if the lock was not free
    /// by then.
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_>> {
        lock_robust(&self.st().lock, deadline_after(timeout), || self.guard())
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            _not_send: PhantomData,
        }
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, waits for a notify, re-takes the lock.
    pub fn wait(&mut self) -> Result<()> {
        self.wait_until(None).map(|_| ())
    }

    /// Like `wait`, at most `timeout`; returns false if it timed out.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_until(deadline_after(timeout))
    }

    /// Waits until `predicate` is true (checked with the lock held, before the first
    /// wait and after every wake-up), at most `timeout` if given. Returns the
    /// predicate's last value.
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

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let st = self.cond.st();
        let m = &st.lock;
        // SAFETY: this guard holds the lock.
        let ticket = unsafe { st.list() }.join();
        let mut seen = st.ev.seq();
        m.unlock()?;
        let mut owner_died = false;
        let outcome = loop {
            // Sleep until something was notified (or the deadline); then look, with the
            // lock held again, whether a token reached this waiter's group.
            let slept = st.ev.wait_until(|| st.ev.seq() != seen, deadline, false);
            // The guard must hold the lock whatever happens.
            match m.lock(None)? {
                Locked::Clean => {}
                Locked::OwnerDied => owner_died = true,
            }
            // SAFETY: the lock was just re-taken.
            let list = unsafe { st.list() };
            if list.take(ticket) {
                break Ok(true);
            }
            match slept {
                Ok(()) if deadline.is_none_or(|d| Instant::now() < d) => {}
                Ok(()) | Err(Error::Timeout) => break Ok(list.leave(ticket)),
                Err(e) => {
                    list.leave(ticket);
                    break Err(e);
                }
            }
            seen = st.ev.seq();
            m.unlock()?;
        };
        if owner_died {
            // The lock is held again by this guard; what the dead holder protected may
            // be half-updated.
            return Err(Error::OwnerDied);
        }
        outcome
    }

    /// Wakes up to `n` of the processes waiting now (none if nobody waits: the notify
    /// is not kept for later waiters).
    pub fn notify(&self, n: u32) {
        let st = self.cond.st();
        // SAFETY: this guard holds the lock.
        if unsafe { st.list() }.notify(n) > 0 {
            st.ev.notify_all();
        }
    }

    /// Wakes every process waiting now.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}
