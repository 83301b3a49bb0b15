//! Deadlines and waiting for a descriptor, shared by every blocking call.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

/// The instant `t` from now; `None` (wait forever) if that is beyond what `Instant` holds.
pub(crate) fn deadline_after(t: Duration) -> Option<Instant> {
    Instant::now().checked_add(t)
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

/// How long a thread about to block on a socket first polls it: a reply to a message just
/// sent usually arrives within this, and polling saves the wake-up of a sleeping thread (tens
/// of µs on a VM).
pub(crate) const POLL_BRIEFLY: Duration = Duration::from_micros(30);

/// Polls socket `fd` for incoming data (or end of stream) for up to [`POLL_BRIEFLY`],
/// yielding the CPU between polls rather than spinning, so that on a busy machine the thread
/// that will answer runs first. Returns early when something is there; the blocking read
/// that follows then does not sleep.
pub(crate) fn poll_briefly(fd: BorrowedFd<'_>) {
    use rustix::net::RecvFlags;
    let until = Instant::now() + POLL_BRIEFLY;
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    loop {
        match rustix::net::recv(fd, &mut probe, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Err(Errno::AGAIN) | Err(Errno::INTR) => {}
            // Data, end of stream or an error: the blocking read reports it.
            _ => return,
        }
        if Instant::now() >= until {
            return;
        }
        std::thread::yield_now();
    }
}
