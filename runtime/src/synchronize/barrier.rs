//! `Barrier`: a fixed number of processes waiting for each other.

use super::*;

const ACTION_MAX: usize = 256;

#[repr(C)]
pub(crate) struct State {
    lock: RobustMutex,
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
///
/// ```
/// use multiproc::prelude::*;
/// use std::time::Duration;
///
/// #[pool_task]
/// fn meet(b: Barrier) -> u32 {
///     b.wait_timeout(Duration::from_secs(60)).expect("everyone came")
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let b = Barrier::new(3)?;
///     let ps: Vec<Process> = (0..2)
///         .map(|_| Process::spawn(meet, (b.clone(),)))
///         .collect::<multiproc::Result<_>>()?;
///     let mine = b.wait_timeout(Duration::from_secs(60))?; // the third party
///     assert!(mine < 3);
///     for p in ps {
///         assert!(p.join()?.success());
///     }
///     Ok(())
/// }
/// ```
pub struct Barrier {
    shm: Shm<State>,
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

shm_state!(State, SegmentKind::Barrier, "Barrier");
shm_handle!(Barrier, State);

impl Barrier {
    /// A barrier for `parties` processes (or threads).
    pub fn new(parties: u32) -> Result<Barrier> {
        Barrier::create(parties, "")
    }

    /// A barrier for `parties` whose last arriver runs the task named `action` (none if
    /// empty).
    fn create(parties: u32, action: &str) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        let shm = Shm::create(0, |st: &mut State, _| {
            st.parties = parties;
            st.action[..action.len()].copy_from_slice(action.as_bytes());
            st.action_len = action.len() as u32;
            st.lock.init(false)
        })?;
        Ok(Barrier { shm })
    }

    /// A barrier whose last arriving party runs `action` (a `#[pool_task]` without
    /// arguments) before any party is released. If the action panics, the barrier
    /// breaks.
    pub fn with_action<F: TaskFn<()>>(parties: u32, action: F) -> Result<Barrier> {
        let entry = action.__entry()?;
        if entry.name.len() > ACTION_MAX {
            return Err(Error::TooLarge {
                what: format!("the barrier action's task name `{}`", entry.name),
                limit: ACTION_MAX,
            });
        }
        Barrier::create(parties, entry.name)
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
        let m = &st.lock;
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
        let args = crate::wire::serial::encode(&vec![()])
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
        let m = &st.lock;
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
