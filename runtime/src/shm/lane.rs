//! A pool worker's *lane*: one small shared segment between the parent and that worker,
//! through which they agree, without a message, on which written-ahead job the worker may
//! start, and through which the parent reads what the worker is running.
//!
//! Jobs are written to a worker ahead of time (pipelining), each numbered with the lane's
//! *epoch* and a sequence number. Before it starts job `(epoch, seq)` the worker moves the
//! claim word from `(epoch, seq - 1)` to `(epoch, seq)` with one compare-and-swap. To take
//! back the jobs it wrote but the worker has not started (the worker is stuck in a long
//! task while another one idles), the parent moves the claim word from `(epoch, s)` to
//! `(epoch + 1, s)`, also with one compare-and-swap: every job of the old epoch after `s`
//! is then refused by the worker when it gets to it, and can safely run elsewhere. Both
//! sides act on one word, so a job is started by exactly one of them.
//!
//! The worker also stores, before each item of a job, which job and item it is running.
//! When the worker dies, the parent reads that word: exactly that item is blamed, and
//! everything else the worker held (results not yet sent, jobs not yet started) runs again
//! elsewhere.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::handle::{Shm, ShmState};
use super::segment::SegmentKind;
use crate::error::Result;

#[repr(C)]
struct LaneState {
    /// `epoch << 32 | seq` of the last job the worker claimed.
    claim: AtomicU64,
    /// `RUNNING | item << 32 | seq` while the worker runs item `item` of job `seq`; the
    /// `RUNNING` bit is clear between jobs.
    running: AtomicU64,
}

const RUNNING: u64 = 1 << 63;
const ITEM_MASK: u64 = 0x7fff_ffff << 32;
/// The item mark of a job whose items run at once on the worker's threads: which of them
/// killed it is not known.
pub(crate) const PARALLEL: usize = 0x7fff_ffff;

fn pack(epoch: u32, seq: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(seq)
}

fn unpack(w: u64) -> (u32, u32) {
    ((w >> 32) as u32, w as u32)
}

/// What became of a claim.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The worker may run the job.
    Granted,
    /// The parent took the job back: skip it.
    Withdrawn,
    /// The claim word is not where the protocol says it must be.
    OutOfOrder { epoch: u32, seq: u32 },
}

/// Which item the worker was running, as the parent reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Running {
    pub seq: u32,
    pub item: usize,
}

// SAFETY: repr(C), valid when zeroed (epoch 0, nothing claimed or running); both fields are
// atomics.
unsafe impl ShmState for LaneState {
    const KIND: SegmentKind = SegmentKind::Lane;
    const WHAT: &'static str = "lane";
}

/// One end of a lane.
#[derive(Clone)]
pub(crate) struct Lane {
    shm: Shm<LaneState>,
}

impl Lane {
    /// A fresh lane, made by the parent for one worker: epoch 0, nothing claimed.
    pub(crate) fn create() -> Result<Lane> {
        Ok(Lane {
            shm: Shm::create(0, |_, _| Ok(()))?,
        })
    }

    /// The worker's end, from the descriptor the parent sent with WELCOME.
    pub(crate) fn attach(fd: OwnedFd) -> Result<Lane> {
        Ok(Lane {
            shm: Shm::attach(fd, 0)?,
        })
    }

    fn st(&self) -> &LaneState {
        self.shm.state()
    }

    pub(crate) fn fd(&self) -> &crate::shm::fds::SharedFd {
        self.shm.fd()
    }

    // --- the worker's side -------------------------------------------------------------

    /// Claims job `(epoch, seq)`, the one written after the last claimed.
    pub(crate) fn claim(&self, epoch: u32, seq: u32) -> Claim {
        let expected = pack(epoch, seq.wrapping_sub(1));
        match self.st().claim.compare_exchange(
            expected,
            pack(epoch, seq),
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => Claim::Granted,
            Err(now) => {
                let (e, s) = unpack(now);
                // Epochs only grow: a later epoch means this job was taken back.
                if e.wrapping_sub(epoch) as i32 > 0 {
                    Claim::Withdrawn
                } else {
                    Claim::OutOfOrder { epoch: e, seq: s }
                }
            }
        }
    }

    /// About to run item `item` of job `seq`.
    pub(crate) fn running(&self, seq: u32, item: usize) {
        let item = (item as u64).min(0x7fff_ffff) << 32;
        self.st()
            .running
            .store(RUNNING | item | u64::from(seq), Ordering::Release);
    }

    /// Job `seq` is done (its result may still be unsent).
    pub(crate) fn idle(&self, seq: u32) {
        self.st().running.store(u64::from(seq), Ordering::Release);
    }

    // --- the parent's side -------------------------------------------------------------

    /// `(epoch, seq)` of the last job the worker claimed.
    #[cfg(test)]
    pub(crate) fn claimed(&self) -> (u32, u32) {
        unpack(self.st().claim.load(Ordering::SeqCst))
    }

    /// Takes back every job of `epoch` after the last one claimed: returns that last
    /// sequence number (jobs after it will be refused; new jobs go out under `epoch + 1`,
    /// numbered from it plus one). `Err` with the word found if it is not in `epoch`.
    pub(crate) fn withdraw(&self, epoch: u32) -> std::result::Result<u32, (u32, u32)> {
        let mut now = self.st().claim.load(Ordering::SeqCst);
        loop {
            let (e, s) = unpack(now);
            if e != epoch {
                return Err((e, s));
            }
            match self.st().claim.compare_exchange(
                now,
                pack(epoch.wrapping_add(1), s),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(s),
                Err(w) => now = w,
            }
        }
    }

    /// The item the worker is running, if any (read after its death: what killed it).
    pub(crate) fn running_now(&self) -> Option<Running> {
        let w = self.st().running.load(Ordering::Acquire);
        (w & RUNNING != 0).then_some(Running {
            seq: w as u32,
            item: ((w & ITEM_MASK) >> 32) as usize,
        })
    }
}

/// This worker's lane, once the handshake gave it one.
static WORKER_LANE: OnceLock<Lane> = OnceLock::new();

/// Makes `lane` the one `ItemMarks::for_running_job` marks (pool workers only).
pub(crate) fn install(lane: Lane) -> &'static Lane {
    WORKER_LANE.get_or_init(|| lane)
}

/// Marks the items of the job the worker is running as it moves through them: one store
/// each (the worker is the only writer), with the lane looked up and the job's word read
/// once per chunk.
pub(crate) struct ItemMarks<'a> {
    lane: Option<(&'a Lane, u64)>,
}

impl ItemMarks<'static> {
    /// For the job this worker runs now; marks nothing outside a pool worker.
    pub(crate) fn for_running_job() -> Self {
        ItemMarks::of(WORKER_LANE.get())
    }
}

impl<'a> ItemMarks<'a> {
    fn of(lane: Option<&'a Lane>) -> Self {
        ItemMarks {
            lane: lane.map(|l| (l, l.st().running.load(Ordering::Relaxed) & !ITEM_MASK)),
        }
    }

    /// The worker moves on to item `item`.
    #[inline]
    pub(crate) fn mark(&self, item: usize) {
        if let Some((lane, job)) = self.lane {
            let item = (item as u64).min(0x7fff_ffff) << 32;
            lane.st().running.store(job | item, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_withdrawals_decide_each_job_once() {
        let parent = Lane::create().unwrap();
        let worker = parent.clone();
        // Jobs (0, 1), (0, 2), (0, 3) written; the worker claims the first two.
        assert_eq!(worker.claim(0, 1), Claim::Granted);
        assert_eq!(worker.claim(0, 2), Claim::Granted);
        assert_eq!(parent.claimed(), (0, 2));
        // The parent takes back what is left of epoch 0: job 3.
        assert_eq!(parent.withdraw(0), Ok(2));
        assert_eq!(worker.claim(0, 3), Claim::Withdrawn);
        // New jobs go out as (1, 3), (1, 4).
        assert_eq!(worker.claim(1, 3), Claim::Granted);
        assert_eq!(parent.withdraw(0), Err((1, 3)));
        assert!(matches!(
            worker.claim(1, 9),
            Claim::OutOfOrder { epoch: 1, seq: 3 }
        ));
        assert_eq!(worker.claim(1, 4), Claim::Granted);
        // Sequence numbers wrap.
        let l = Lane::create().unwrap();
        l.st().claim.store(pack(5, u32::MAX), Ordering::SeqCst);
        assert_eq!(l.claim(5, 0), Claim::Granted);
        assert_eq!(l.claimed(), (5, 0));
    }

    #[test]
    fn the_running_mark_names_job_and_item() {
        let l = Lane::create().unwrap();
        assert_eq!(l.running_now(), None);
        l.running(7, 0);
        assert_eq!(l.running_now(), Some(Running { seq: 7, item: 0 }));
        ItemMarks::of(Some(&l)).mark(41);
        assert_eq!(l.running_now(), Some(Running { seq: 7, item: 41 }));
        l.idle(7);
        assert_eq!(l.running_now(), None);
        l.running(u32::MAX, 3);
        assert_eq!(
            l.running_now(),
            Some(Running {
                seq: u32::MAX,
                item: 3
            })
        );
    }
}
