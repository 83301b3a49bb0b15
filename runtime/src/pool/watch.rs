//! `kill_after`: the slot thread, which waits on its worker's results anyway, also looks at
//! what the worker is running (its lane's running mark) and kills it when one item has run
//! past its job's limit.
//!
//! Precision: while any job of the pool has a limit, the slot thread looks at least every
//! quarter of the shortest limit, so an item is first seen running within a quarter of its
//! limit after it started, and is killed once it has been seen running for the whole limit:
//! after at least `limit`, at most `limit * 1.25` (plus scheduling delays). A pool that never
//! sets `kill_after` never wakes for it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::sched::Shared;
use crate::error::Error;
use crate::shm::lane::{Lane, Running};
use crate::sys::wait::lock;

/// The shortest wait between looks.
const MIN_LOOK: Duration = Duration::from_millis(1);

/// What one slot thread has seen its worker run.
#[derive(Default)]
pub(super) struct Watch {
    /// The item running at the last look, and when it was first seen.
    seen: Option<(Running, Instant)>,
}

/// What a look found.
pub(super) enum Look {
    /// Nothing to watch: wait for results without a deadline.
    Quiet,
    /// Look again by then.
    Again(Instant),
    /// This item has run past its limit: kill the worker; the item fails with the error.
    Expired(Running, Error),
}

/// A limit in nanoseconds, `u64::MAX` for none.
pub(super) fn nanos(limit: Option<Duration>) -> u64 {
    limit.map_or(u64::MAX, |l| {
        u64::try_from(l.as_nanos()).unwrap_or(u64::MAX - 1)
    })
}

fn quarter(limit: Duration) -> Duration {
    (limit / 4).max(MIN_LOOK)
}

impl Shared {
    /// Notes the limits of jobs about to be queued: a limit shorter than any before wakes
    /// every slot thread, so that none sleeps past it without looking.
    pub(super) fn note_limits(&self, jobs: &[super::sched::Job]) {
        let shortest = nanos(jobs.iter().filter_map(|j| j.policy.kill_after).min());
        if shortest < self.shortest_limit.fetch_min(shortest, Ordering::SeqCst) {
            for bell in &self.bells {
                bell.ring();
            }
        }
    }

    /// Looks at what slot `k`'s worker runs, against its job's `kill_after`.
    pub(super) fn look(&self, k: usize, lane: &Lane, watch: &mut Watch) -> Look {
        let shortest = self.shortest_limit.load(Ordering::SeqCst);
        if shortest == u64::MAX {
            return Look::Quiet;
        }
        let now = Instant::now();
        // A job with a limit may be written to this worker at any moment: look again soon.
        let idle_look = now + quarter(Duration::from_nanos(shortest));
        let io = lock(&self.slots[k]);
        let Some(running) = lane.running_now() else {
            watch.seen = None;
            return Look::Again(idle_look);
        };
        let job = io.inflight.iter().find(|j| j.seq == running.seq);
        let Some((task, limit)) = job.and_then(|j| Some((j.task, j.policy.kill_after?))) else {
            watch.seen = None;
            return Look::Again(idle_look);
        };
        let since = match watch.seen {
            Some((seen, since)) if seen == running => since,
            _ => {
                watch.seen = Some((running, now));
                now
            }
        };
        if now >= since + limit {
            watch.seen = None;
            return Look::Expired(
                running,
                Error::TaskTimedOut {
                    task: task.to_owned(),
                    after: limit,
                },
            );
        }
        Look::Again((since + limit).min(idle_look))
    }
}
