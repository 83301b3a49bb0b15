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

/// Held while alive; releases on drop. Not `Send`: a lock is released by the thread that
/// took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    m: RobustMutex,
    _borrow: PhantomData<&'a ()>,
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

impl LockGuard<'_> {
    fn new(m: RobustMutex) -> Self {
        LockGuard {
            m,
            _borrow: PhantomData,
            _not_send: PhantomData,
        }
    }
}

macro_rules! lock_type {
    ($(#[$doc:meta])* $ty:ident, $kind:expr, $what:literal, $recursive:expr) => {
        $(#[$doc])*
        pub struct $ty {
            seg: Segment,
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($ty))
            }
        }

        impl $ty {
            /// A new, unlocked lock.
            pub fn new() -> Result<$ty> {
                let l = $ty { seg: Self::create()? };
                l.st().mutex().init($recursive)?;
                Ok(l)
            }

            /// Waits for the lock. [`LockError::OwnerDied`] (with the guard: the lock is
            /// held) if its previous holder died holding it.
            pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
                let m = self.st().mutex();
                lock_robust_forever(m, || LockGuard::new(m))
            }

            /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if the lock was not
            /// free by then (Python's `acquire(timeout=...)` returning `False`).
            pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
                let m = self.st().mutex();
                lock_robust(m, deadline_after(timeout), || LockGuard::new(m))
            }

            /// Takes the lock if it is free now (`Ok(None)` if not).
            pub fn try_acquire(&self) -> TryLockResult<LockGuard<'_>> {
                let m = self.st().mutex();
                try_lock_robust(m, || LockGuard::new(m))
            }
        }

        shm_handle!($ty, $kind, $what);
    };
}

mod lock_state {
    pub(crate) type State = super::MutexSpace;
}

use lock_state::State;

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
    SegmentKind::Lock,
    "Lock",
    false
);
lock_type!(
    /// A re-entrant lock (Python's `RLock`): the thread holding it may acquire it again;
    /// it is free once every guard is dropped.
    RLock,
    SegmentKind::RLock,
    "RLock",
    true
);

pub use event::Event;
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

mod event {
    use super::*;

    #[repr(C)]
    pub(crate) struct State {
        flag: AtomicU32,
        ev: EventCount,
    }

    /// A flag processes can wait for (Python's `Event`).
    pub struct Event {
        seg: Segment,
    }

    impl std::fmt::Debug for Event {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Event")
                .field("set", &self.is_set())
                .finish()
        }
    }

    shm_handle!(Event, SegmentKind::Event, "Event");

    impl Event {
        /// A new event, not set.
        pub fn new() -> Result<Event> {
            Ok(Event {
                seg: Self::create()?,
            })
        }

        /// Sets the flag and wakes every waiter.
        pub fn set(&self) {
            self.st().flag.store(1, Ordering::SeqCst);
            self.st().ev.notify_all();
        }

        /// Clears the flag.
        pub fn clear(&self) {
            self.st().flag.store(0, Ordering::SeqCst);
        }

        /// Whether the flag is set.
        pub fn is_set(&self) -> bool {
            self.st().flag.load(Ordering::SeqCst) != 0
        }

        /// Waits until the flag is set.
        pub fn wait(&self) -> Result<()> {
            self.st().ev.wait_until(|| self.is_set(), None, false)
        }

        /// Waits at most `timeout`; returns whether the flag is set.
        pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
            match self
                .st()
                .ev
                .wait_until(|| self.is_set(), deadline_after(timeout), false)
            {
                Ok(()) => Ok(true),
                Err(Error::Timeout) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

mod semaphore {
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
    pub struct Semaphore {
        seg: Segment,
    }

    /// A [`Semaphore`] that refuses to be released above its initial value (Python's
    /// `BoundedSemaphore`).
    pub struct BoundedSemaphore {
        seg: Segment,
    }

    /// Gives its unit back to the semaphore when dropped.
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
                return Err(Error::InvalidArgument(
                    "semaphore released too many times".into(),
                ));
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

    macro_rules! semaphore_api {
        ($ty:ident, $kind:expr, $what:literal, $bounded:expr) => {
            shm_handle!($ty, $kind, $what);

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
                    let s = $ty {
                        seg: Self::create()?,
                    };
                    s.st().value.store(value, Ordering::SeqCst);
                    if $bounded {
                        if value == 0 {
                            return Err(Error::InvalidArgument(
                                "a bounded semaphore needs an initial value above 0".into(),
                            ));
                        }
                        s.st().max.store(value, Ordering::SeqCst);
                    }
                    Ok(s)
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

    semaphore_api!(Semaphore, SegmentKind::Semaphore, "Semaphore", false);
    semaphore_api!(
        BoundedSemaphore,
        SegmentKind::Semaphore,
        "BoundedSemaphore",
        true
    );
}

pub use condition::{Condition, ConditionGuard};

mod condition {
    use super::*;
    use crate::shm::waitlist::Waitlist;

    #[repr(C)]
    pub(crate) struct State {
        lock: MutexSpace,
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
    pub struct Condition {
        seg: Segment,
    }

    impl std::fmt::Debug for Condition {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Condition")
        }
    }

    shm_handle!(Condition, SegmentKind::Condition, "Condition");

    /// The condition's lock, held; waits and notifies go through it.
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub struct ConditionGuard<'a> {
        cond: &'a Condition,
        _not_send: PhantomData<*const ()>,
    }

    impl Drop for ConditionGuard<'_> {
        fn drop(&mut self) {
            let _ = self.cond.st().lock.mutex().unlock();
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
            let c = Condition {
                seg: Self::create()?,
            };
            // SAFETY: fresh segment, not yet shared.
            unsafe { *c.st().list() = Waitlist::default() };
            c.st().lock.mutex().init(false)?;
            Ok(c)
        }

        /// Takes the condition's lock ([`LockError::OwnerDied`], with the guard, if its
        /// previous holder died holding it).
        pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
            lock_robust_forever(self.st().lock.mutex(), || self.guard())
        }

        /// Like `acquire`, waiting at most `timeout`: `Ok(None)` if the lock was not free
        /// by then.
        pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_>> {
            lock_robust(self.st().lock.mutex(), deadline_after(timeout), || {
                self.guard()
            })
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
            let m = st.lock.mutex();
            // SAFETY (every `st.list()` below): this guard holds the lock at that point.
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
}

pub use barrier::Barrier;

mod barrier {
    use super::*;

    const ACTION_MAX: usize = 256;

    #[repr(C)]
    pub(crate) struct State {
        lock: MutexSpace,
        parties: u32,
        /// Arrived in the current generation (under the lock).
        count: AtomicU32,
        generation: AtomicU32,
        broken: AtomicU32,
        /// The generation that `reset` cut short (its waiters fail), plus one; 0: none.
        reset_gen: AtomicU32,
        ev: EventCount,
        default_timeout_ms: AtomicU64,
        action_len: u32,
        action: [u8; ACTION_MAX],
    }

    /// Makes a fixed number of processes wait for each other (Python's `Barrier`).
    ///
    /// `wait` returns each party's arrival index (0 for the first, `parties - 1` for the
    /// last). If any party times out, or the barrier is aborted, every waiter, present and
    /// future, gets [`Error::BrokenBarrier`] until `reset`.
    pub struct Barrier {
        seg: Segment,
    }

    impl std::fmt::Debug for Barrier {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Barrier")
                .field("parties", &self.parties())
                .field("n_waiting", &self.n_waiting())
                .field("broken", &self.broken())
                .finish()
        }
    }

    shm_handle!(Barrier, SegmentKind::Barrier, "Barrier");

    impl Barrier {
        /// A barrier for `parties` processes (or threads).
        pub fn new(parties: u32) -> Result<Barrier> {
            if parties == 0 {
                return Err(Error::InvalidArgument(
                    "a barrier needs at least one party".into(),
                ));
            }
            let seg = Self::create()?;
            // SAFETY: fresh segment, not yet shared: plain writes of its fields.
            unsafe {
                (*seg.body().cast::<State>()).parties = parties;
            }
            let b = Barrier { seg };
            b.st().lock.mutex().init(false)?;
            Ok(b)
        }

        /// A barrier whose last arriving party runs `action` (a `#[pool_task]` without
        /// arguments) before any party is released. If the action panics, the barrier
        /// breaks.
        pub fn with_action<F: TaskFn<()>>(parties: u32, _action: F) -> Result<Barrier> {
            let entry = registry::lookup_fn::<F>()?;
            if entry.name.len() > ACTION_MAX {
                return Err(Error::InvalidArgument(format!(
                    "task name `{}` is too long for a barrier action",
                    entry.name
                )));
            }
            let b = Barrier::new(parties)?;
            // SAFETY: not yet shared; plain writes.
            unsafe {
                let st = b.seg.body().cast::<State>();
                (&mut (*st).action)[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
                (*st).action_len = entry.name.len() as u32;
            }
            Ok(b)
        }

        /// Sets the timeout `wait` uses (Python's `timeout` argument of `Barrier`).
        pub fn set_default_timeout(&self, timeout: Option<Duration>) {
            let ms = timeout.map_or(0, |t| t.as_millis().clamp(1, u128::from(u64::MAX)) as u64);
            self.st().default_timeout_ms.store(ms, Ordering::SeqCst);
        }

        /// Number of parties.
        pub fn parties(&self) -> u32 {
            self.st().parties
        }

        /// Parties waiting now.
        pub fn n_waiting(&self) -> u32 {
            self.st().count.load(Ordering::SeqCst)
        }

        /// Whether the barrier is broken.
        pub fn broken(&self) -> bool {
            self.st().broken.load(Ordering::SeqCst) != 0
        }

        /// Waits for all parties (with the default timeout, if set).
        pub fn wait(&self) -> Result<u32> {
            let ms = self.st().default_timeout_ms.load(Ordering::SeqCst);
            let deadline = (ms > 0)
                .then(|| deadline_after(Duration::from_millis(ms)))
                .flatten();
            self.wait_deadline(deadline)
        }

        /// Waits for all parties, at most `timeout`; a timeout breaks the barrier.
        pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
            self.wait_deadline(deadline_after(timeout))
        }

        fn wait_deadline(&self, deadline: Option<Instant>) -> Result<u32> {
            let st = self.st();
            let m = st.lock.mutex();
            // A party that died inside the lock (only ever briefly held) left nothing
            // half-done that matters: carry on.
            m.lock(deadline).map_err(|e| self.break_on_timeout(e))?;
            if self.broken() {
                m.unlock()?;
                return Err(Error::BrokenBarrier);
            }
            let gen = st.generation.load(Ordering::SeqCst);
            let index = st.count.fetch_add(1, Ordering::SeqCst);
            if index + 1 == st.parties {
                let r = self.run_action();
                if r.is_ok() {
                    st.count.store(0, Ordering::SeqCst);
                    st.generation.store(gen.wrapping_add(1), Ordering::SeqCst);
                } else {
                    st.broken.store(1, Ordering::SeqCst);
                }
                m.unlock()?;
                st.ev.notify_all();
                return r.map(|()| index);
            }
            m.unlock()?;
            let waited = st.ev.wait_until(
                || st.generation.load(Ordering::SeqCst) != gen || self.broken(),
                deadline,
                false,
            );
            if st.generation.load(Ordering::SeqCst) != gen {
                if st.reset_gen.load(Ordering::SeqCst) == gen.wrapping_add(1) {
                    return Err(Error::BrokenBarrier);
                }
                return Ok(index);
            }
            match waited {
                Ok(()) => Err(Error::BrokenBarrier),
                Err(e) => Err(self.break_on_timeout(e)),
            }
        }

        fn break_on_timeout(&self, e: Error) -> Error {
            if matches!(e, Error::Timeout) {
                self.abort();
                Error::BrokenBarrier
            } else {
                e
            }
        }

        fn run_action(&self) -> Result<()> {
            let st = self.st();
            if st.action_len == 0 {
                return Ok(());
            }
            let name = std::str::from_utf8(&st.action[..st.action_len as usize])
                .map_err(|_| Error::Protocol("corrupted barrier action name".into()))?;
            let entry = registry::lookup_name(name).ok_or_else(|| Error::UnregisteredTask {
                name: name.to_owned(),
            })?;
            let args = bincode::serialize(&vec![()])
                .map_err(|e| Error::serialization("barrier action arguments", e))?;
            let mut out = Vec::new();
            (entry.run_chunk)(&args, &mut out)
                .map_err(|m| Error::serialization("barrier action arguments", m))?;
            crate::wire::codec::check_single_outcome(entry.name, &out)
        }

        /// Breaks the barrier: every waiter gets `BrokenBarrier`, now and until `reset`.
        pub fn abort(&self) {
            self.st().broken.store(1, Ordering::SeqCst);
            self.st().ev.notify_all();
        }

        /// Returns the barrier to its initial state; parties waiting now get
        /// `BrokenBarrier`.
        pub fn reset(&self) -> Result<()> {
            let st = self.st();
            let m = st.lock.mutex();
            let _ = m.lock(None)?;
            let gen = st.generation.load(Ordering::SeqCst);
            if st.count.load(Ordering::SeqCst) > 0 {
                st.reset_gen.store(gen.wrapping_add(1), Ordering::SeqCst);
            }
            st.count.store(0, Ordering::SeqCst);
            st.generation.store(gen.wrapping_add(1), Ordering::SeqCst);
            st.broken.store(0, Ordering::SeqCst);
            m.unlock()?;
            st.ev.notify_all();
            Ok(())
        }
    }
}
