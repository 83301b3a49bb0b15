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

/// Polls `fds` until one is ready or `deadline` passes (0 then); interrupted polls resume.
pub(crate) fn poll_until(
    fds: &mut [PollFd<'_>],
    deadline: Option<Instant>,
) -> Result<usize, Errno> {
    loop {
        let left = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as _,
            }
        });
        match poll(fds, left.as_ref()) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// Waits until `fd` is readable (data, end of stream or hang-up) or `deadline` passes.
/// `Ok(true)`: readable; `Ok(false)`: the deadline passed. Interrupted waits are resumed.
pub(crate) fn readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<bool, Errno> {
    Ok(poll_until(&mut [PollFd::new(&fd, PollFlags::IN)], deadline)? > 0)
}

/// What [`readable_or_rung`] woke for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    Readable,
    Rung,
    TimedOut,
}

/// [`readable`], also waking when `bell` (see [`Bell`]) is rung; readable wins if both are.
pub(crate) fn readable_or_rung(
    fd: BorrowedFd<'_>,
    bell: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> Result<Wake, Errno> {
    let mut fds = [
        PollFd::new(&fd, PollFlags::IN),
        PollFd::new(&bell, PollFlags::IN),
    ];
    Ok(match poll_until(&mut fds, deadline)? {
        0 => Wake::TimedOut,
        _ if !fds[0].revents().is_empty() => Wake::Readable,
        _ => Wake::Rung,
    })
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
/// so the blocking read that follows usually does not sleep. True if it saw any.
pub(crate) fn poll_briefly(fd: BorrowedFd<'_>) -> bool {
    use rustix::net::RecvFlags;
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    poll_briefly_for(None, || {
        // Data, end of stream or an error: the blocking read reports it.
        !matches!(
            rustix::net::recv(fd, &mut probe, RecvFlags::PEEK | RecvFlags::DONTWAIT),
            Err(Errno::AGAIN) | Err(Errno::INTR)
        )
    })
}

/// Receives into `buf` from socket `fd` without sleeping, polling as [`poll_briefly_for`]
/// does (until `deadline`, if sooner): `Some` with what the receive gave (bytes, 0 at end of
/// stream, or an error) once it gave anything but "nothing yet", `None` if nothing came.
pub(crate) fn recv_briefly(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    buf: &mut [u8],
) -> Option<std::io::Result<usize>> {
    use rustix::net::RecvFlags;
    let mut got = None;
    poll_briefly_for(deadline, || {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => got = Some(Ok(n)),
            Err(Errno::AGAIN) | Err(Errno::INTR) => return false,
            Err(e) => got = Some(Err(e.into())),
        }
        true
    });
    got
}

/// An eventfd one thread rings to wake another out of [`readable_or_rung`].
pub(crate) struct Bell(std::os::fd::OwnedFd);

impl Bell {
    pub(crate) fn new() -> std::io::Result<Bell> {
        use rustix::event::{eventfd, EventfdFlags};
        Ok(Bell(eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }

    /// Makes the bell readable until the next [`Bell::silence`].
    pub(crate) fn ring(&self) {
        // Only fails when the counter would overflow: it is readable then anyway.
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    pub(crate) fn silence(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut buf);
    }
}
