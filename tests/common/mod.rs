//! Helpers shared by the integration tests: looking at processes and descriptors in /proc.

#![allow(dead_code)]

use std::time::Duration;

/// Pids whose parent is `parent`, zombies included.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((_, ppid)) = stat(pid) {
            if ppid == parent {
                out.push(pid);
            }
        }
    }
    out
}

/// (state, ppid) from /proc/PID/stat.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
pub fn is_dead(pid: u32) -> bool {
    !matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Blocks until `pid` exits or `timeout` passes; true if it exited. Uses a pidfd, which
/// becomes readable when the process ends: no polling.
pub fn wait_exit(pid: u32, timeout: Duration) -> bool {
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) as libc::c_int;
        if fd < 0 {
            return is_dead(pid); // already gone
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let n = libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int);
        libc::close(fd);
        n == 1 || is_dead(pid)
    }
}

/// Descriptors open in this process, as "fd -> target".
pub fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let target = std::fs::read_link(e.path()).map(|t| t.display().to_string());
                    format!(
                        "{} -> {}",
                        e.file_name().to_string_lossy(),
                        target.unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
