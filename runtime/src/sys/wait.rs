//! Deadlines, locks and waiting (for a descriptor, a condition, or briefly by polling),
//! shared by every blocking call.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

/// The instant `t` from now; `None` (wait forever) if that is beyond what `Instant` holds.
pub(crate) fn deadline_after(t: Duration) -> Option<Instant> {
    Instant::now().checked_add(t)
}

/// Locks `m`, ignoring poisoning: the state behind this crate's mutexes is updated in single
/// steps, so a panicking holder cannot leave it half-changed.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A condition variable whose notifiers make no wake-up call (a system call) when nobody
/// sleeps on it.
#[derive(Default)]
pub(crate) struct Waiters {
    cond: Condvar,
    sleepers: AtomicUsize,
}

impl Waiters {
    /// Wakes every sleeper. Call after changing the state under its mutex (holding it or
    /// not): a sleeper registers under the mutex before it checks the state and sleeps, so
    /// either it sees the change or it is counted here.
    pub(crate) fn notify_all(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.cond.notify_all();
        }
    }

    /// Sleeps once (the mutex released meanwhile) until notified, spuriously woken, or
    /// `deadline`. `Err` with the guard if the deadline had already passed.
    pub(crate) fn wait<'a, T>(
        &self,
        g: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, T>, MutexGuard<'a, T>> {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(g);
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let g = match left {
            None => self.cond.wait(g).unwrap_or_else(|p| p.into_inner()),
            Some(left) => {
                self.cond
                    .wait_timeout(g, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        Ok(g)
    }
}

/// Waits until `fd` is readable (data, end of stream or hang-up) or `deadline` passes.
/// `Ok(true)`: readable; `Ok(false)`: the deadline passed. Interrupted waits are resumed.
pub(crate) fn readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<bool, Errno> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    loop {
        let left = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as _,
            }
        });
        match poll(&mut fds, left.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `fd` has room for writing (or is closed) or `timeout` passes; true if it has.
pub(crate) fn writable(fd: BorrowedFd<'_>, timeout: Duration) -> Result<bool, Errno> {
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    let ts = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    loop {
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// How long a thread about to block on a socket first polls it: a reply to a message just
/// sent usually arrives within this, and polling saves the wake-up of a sleeping thread (tens
/// of µs on a VM).
pub(crate) const POLL_BRIEFLY: Duration = Duration::from_micros(30);

/// Polls `ready` for up to [`POLL_BRIEFLY`] (or until `deadline`, if sooner), yielding the
/// CPU between polls rather than spinning, so that on a busy machine the thread that will
/// make it ready runs first. True if `ready` said so.
pub(crate) fn poll_briefly_for(deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    let until = Instant::now() + POLL_BRIEFLY;
    let until = deadline.map_or(until, |d| d.min(until));
    loop {
        std::thread::yield_now();
        if ready() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
    }
}

/// Polls socket `fd` briefly (see [`poll_briefly_for`]) for incoming data or end of stream,
/// so the blocking read that follows usually does not sleep.
pub(crate) fn poll_briefly(fd: BorrowedFd<'_>) {
    use rustix::net::RecvFlags;
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    poll_briefly_for(None, || {
        // Data, end of stream or an error: the blocking read reports it.
        !matches!(
            rustix::net::recv(fd, &mut probe, RecvFlags::PEEK | RecvFlags::DONTWAIT),
            Err(Errno::AGAIN) | Err(Errno::INTR)
        )
    });
}
