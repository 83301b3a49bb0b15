//! Thread versions of `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`,
//! `Condition` and `Barrier` (the process ones are `crate::synchronize`). A thread that panics
//! holding a lock releases it while unwinding: there is no `OwnerDied` here.

use std::marker::PhantomData;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::monitor::Monitor;
use crate::error::{Error, LockResult, Result, TryLockResult};
use crate::shm::waitlist::Waitlist;
use crate::sys::wait::deadline_after;

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
/// The calls are the process version's: see [its example](crate::RLock).
pub struct RLock(Lock);

/// A held thread [`Lock`] or [`RLock`]; releases on drop.
/// The calls are the process version's: see [its example](crate::Lock).
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
            return Err(Error::AlreadyHeld);
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
            Err(Error::Timeout | Error::AlreadyHeld) => Ok(None),
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
/// The calls are the process version's: see [its example](crate::Semaphore).
pub struct Semaphore {
    m: Arc<Monitor<u32>>,
    max: Option<u32>,
}

/// A [`Semaphore`] that refuses to be released above its initial value.
/// The calls are the process version's: see [its example](crate::Semaphore).
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
/// The calls are the process version's: see [its example](crate::Semaphore).
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
            return Err(Error::ReleasedTooOften {
                what: "a semaphore",
            });
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
/// The calls are the process version's: see [its example](crate::Event).
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
/// The calls are the process version's: see [its example](crate::Condition).
#[derive(Clone)]
pub struct Condition {
    m: Arc<Monitor<CondState>>,
}

/// A thread [`Condition`]'s lock, held.
/// The calls are the process version's: see [its example](crate::Condition).
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
/// The calls are the process version's: see [its example](crate::Barrier).
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

debug_by_name!(
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier
);
debug_by_name!(guard LockGuard, SemaphoreGuard, ConditionGuard);
