//! The operating system, wrapped once: deadlines and waiting (`wait`), futexes and robust
//! mutexes (`futex`), descriptors passed over Unix sockets (`fds`), shared mappings (`mmap`),
//! and the small process and thread calls below. Nothing here knows about pools, workers or
//! the wire protocol; every other layer builds on it.

pub(crate) mod fds;
pub(crate) mod futex;
#[cfg(test)]
pub(crate) mod fuzz;
pub(crate) mod mmap;
pub(crate) mod wait;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

/// Runs `f` again while it fails with `EAGAIN` (the kernel's "try again": a transient
/// shortage of threads, processes or memory, seen when many workers start at once on a
/// loaded machine), backing off from 1 ms to 64 ms, about 0.5 s in all; then gives up.
pub(crate) fn retry_transient<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut delay = Duration::from_millis(1);
    for _ in 0..10 {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(64));
            }
            other => return other,
        }
    }
    f()
}

/// Reads exactly `buf.len()` bytes from a blocking descriptor.
pub(crate) fn read_exact_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A pidfd for process `pid` (readable once it exits), if the kernel has pidfds.
pub(crate) fn pidfd(pid: i32) -> Option<OwnedFd> {
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    Pid::from_raw(pid).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
}

/// Closes descriptors `first..=last` (nothing if the range is empty).
///
/// # Safety
/// No live `OwnedFd` or `File` may refer to a descriptor in the range.
pub(crate) unsafe fn close_range(first: libc::c_uint, last: libc::c_uint) {
    if first > last {
        return;
    }
    // SAFETY: a plain syscall; the caller vouches that nothing owns these descriptors.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } == 0 {
        return;
    }
    // Kernels before 5.9: walk the open descriptors.
    // SAFETY: sysconf and close are plain syscalls (same contract as above).
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(0, 65_536) as libc::c_uint;
    for fd in first..=last.min(max) {
        // SAFETY: as above.
        unsafe { libc::close(fd as libc::c_int) };
    }
}

/// This process's resident memory in bytes (`/proc/self/statm`), if the kernel says.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Caps this process's address space (`RLIMIT_AS`) at `bytes`: allocations past it fail.
pub(crate) fn limit_address_space(bytes: u64) -> std::io::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let hard = getrlimit(Resource::As).maximum;
    let soft = hard.map_or(bytes, |h| bytes.min(h));
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(soft),
            maximum: hard,
        },
    )
    .map_err(Into::into)
}
