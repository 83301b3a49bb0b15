//! State behind a mutex with one condition variable: what every thread object is built on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::sys::wait::{lock, Waiters};

/// State behind a mutex with one condition variable; poisoning is ignored (all state here is
/// updated in single steps).
pub(super) struct Monitor<S> {
    state: Mutex<S>,
    pub(super) changed: Waiters,
}

impl<S> Monitor<S> {
    pub(super) fn new(s: S) -> Arc<Monitor<S>> {
        Arc::new(Monitor {
            state: Mutex::new(s),
            changed: Waiters::default(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, S> {
        lock(&self.state)
    }

    /// Waits while `blocked(state)`, until `deadline`; `Err(Timeout)` if still blocked then.
    pub(super) fn wait_while<'a>(
        &'a self,
        mut g: MutexGuard<'a, S>,
        deadline: Option<Instant>,
        mut blocked: impl FnMut(&mut S) -> bool,
    ) -> Result<MutexGuard<'a, S>> {
        while blocked(&mut g) {
            g = self.changed.wait(g, deadline).map_err(|_| Error::Timeout)?;
        }
        Ok(g)
    }
}
