//! `Event`: a flag processes can wait for.

use super::*;

#[repr(C)]
pub(crate) struct State {
    flag: AtomicU32,
    ev: EventCount,
}

/// A flag processes can wait for (Python's `Event`).
///
/// ```
/// use multiproc::prelude::*;
/// use std::time::Duration;
///
/// #[pool_task]
/// fn start_when_told(go: Event) -> bool {
///     go.wait_timeout(Duration::from_secs(60)).unwrap_or(false)
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let go = Event::new()?;
///     let p = Process::spawn(start_when_told, (go.clone(),))?;
///     go.set();
///     assert!(p.join()?.success());
///     assert!(go.is_set());
///     Ok(())
/// }
/// ```
pub struct Event {
    shm: Shm<State>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

shm_state!(State, SegmentKind::Event, "Event");
shm_handle!(Event, State);

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            shm: Shm::create(0, |_, _| Ok(()))?,
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
