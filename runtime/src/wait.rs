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
