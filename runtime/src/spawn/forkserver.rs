//! The fork server: one process started by re-execution that does nothing but fork workers.
//!
//! Forking the user's program directly is unsafe once it has threads (a lock held by another
//! thread stays locked forever in the child). The server is single-threaded by construction:
//! it entered `init()` before `main`'s own code and never leaves this loop. Each request
//! carries, as SCM_RIGHTS, the worker's channel and a status pipe; the server forks, writes
//! the child's pid on the status pipe, and later its exit status once it has reaped it.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::RecvFlags;
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{pidfd_open, waitpid, Pid, PidfdFlags, WaitOptions};

use super::{read_exact_fd, reexec_command, wait_readable, ExitInfo, Kind, WorkerProcess};
use crate::error::{Error, Result};
use crate::role;
use crate::wire::frame::{self, Kind as FrameKind};
use crate::wire::handshake::{check_hello, Hello};

/// What a fork request asks the child to become: a pool worker, or a `Process` child.
pub(crate) const FORK_WORKER: u8 = 1;
pub(crate) const FORK_PROCESS: u8 = 2;

/// How long to wait for the server's greeting or a fork's pid.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The parent's handle on a running fork server.
pub(crate) struct ForkServer {
    ctl: Mutex<UnixStream>,
    process: Mutex<Child>,
}

impl ForkServer {
    /// The fork server shared by this process's pools, started if none is running.
    pub(crate) fn shared() -> Result<Arc<ForkServer>> {
        static SHARED: Mutex<Weak<ForkServer>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.upgrade() {
            return Ok(s);
        }
        let s = Arc::new(ForkServer::start()?);
        *slot = Arc::downgrade(&s);
        Ok(s)
    }

    fn start() -> Result<ForkServer> {
        let (parent_end, child_end) = UnixStream::pair()?;
        let mut cmd = reexec_command(role::FORKSERVER_FD_ENV, child_end.into());
        let mut process = super::retry_transient(|| cmd.spawn())
            .map_err(|e| Error::WorkerStart(format!("could not start the fork server: {e}")))?;
        drop(cmd); // closes our copy of the server's end
        let greeting = (|| {
            parent_end.set_read_timeout(Some(START_TIMEOUT))?;
            let f = frame::read_frame(&mut &parent_end)?;
            parent_end.set_read_timeout(None)?;
            match f {
                Some(f) if f.kind == FrameKind::Hello => {
                    crate::wire::serial::decode::<Hello>(&f.body)
                        .map_err(|e| Error::Protocol(format!("bad fork server greeting: {e}")))
                }
                Some(f) => Err(Error::Protocol(format!("fork server sent {:?}", f.kind))),
                None => Err(Error::WorkerStart(
                    "the fork server exited before greeting; does main start with \
                     multiproc::init() / #[multiproc::main]?"
                        .into(),
                )),
            }
        })();
        let ok = greeting.and_then(|h| check_hello(&h, crate::registry::build_id()));
        if let Err(e) = ok {
            let _ = process.kill();
            let _ = process.wait();
            return Err(e);
        }
        Ok(ForkServer {
            ctl: Mutex::new(parent_end),
            process: Mutex::new(process),
        })
    }

    /// Asks the server for one child in the role `what` ([`FORK_WORKER`], [`FORK_PROCESS`]).
    pub(crate) fn fork(self: &Arc<Self>, what: u8) -> Result<(WorkerProcess, UnixStream)> {
        let (parent_end, child_end) = UnixStream::pair()?;
        let (status_r, status_w) = pipe_with(PipeFlags::CLOEXEC)?;
        {
            let ctl = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
            let fds = [child_end.as_fd(), status_w.as_fd()];
            crate::sys::fds::send(&*ctl, &[IoSlice::new(&[what])], &fds)
                .map_err(|e| Error::WorkerStart(format!("fork server unreachable: {e}")))?;
        }
        drop(child_end);
        drop(status_w);
        if !wait_readable(status_r.as_fd(), START_TIMEOUT) {
            return Err(Error::WorkerStart("the fork server did not answer".into()));
        }
        let mut pid = [0u8; 4];
        read_exact_fd(status_r.as_fd(), &mut pid)
            .map_err(|e| Error::WorkerStart(format!("the fork server could not fork: {e}")))?;
        let pid = i32::from_le_bytes(pid);
        let pidfd = crate::sys::pidfd(pid);
        Ok((
            WorkerProcess {
                pid: pid as u32,
                pidfd,
                kind: Kind::Forked {
                    status: status_r,
                    _server: Arc::clone(self),
                },
                exit: None,
            },
            parent_end,
        ))
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Closing the control socket makes the server exit; its workers are gone already
        // (each holds an Arc to this server).
        if let Ok(ctl) = self.ctl.get_mut() {
            let _ = ctl.shutdown(std::net::Shutdown::Both);
        }
        let process = self.process.get_mut().unwrap_or_else(|p| p.into_inner());
        let pidfd = crate::sys::pidfd(process.id() as i32);
        let exited = pidfd.is_some_and(|fd| wait_readable(fd.as_fd(), Duration::from_secs(5)));
        if !exited {
            let _ = process.kill();
        }
        let _ = process.wait();
    }
}

pub(crate) fn decode_exit(buf: [u8; 8]) -> ExitInfo {
    let sig = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let code = i32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    ExitInfo {
        signal: (sig > 0).then_some(sig),
        code: (code >= 0).then_some(code),
    }
}

fn encode_exit(st: rustix::process::WaitStatus) -> [u8; 8] {
    let sig = st.terminating_signal().unwrap_or(0);
    let code = st.exit_status().unwrap_or(-1);
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&sig.to_le_bytes());
    b[4..].copy_from_slice(&code.to_le_bytes());
    b
}

struct Forked {
    pid: Pid,
    pidfd: OwnedFd,
    status: OwnedFd,
}

/// The server's loop: each forked child runs the main its request names on its channel
/// (`mains[0]` for [`FORK_WORKER`], `mains[1]` for [`FORK_PROCESS`]). Never returns.
pub(crate) fn serve(ctl: OwnedFd, mains: [fn(OwnedFd) -> !; 2]) -> ! {
    let hello = Hello {
        version: crate::wire::PROTOCOL_VERSION,
        build_id: crate::registry::build_id(),
        pid: std::process::id(),
    };
    let greeting = crate::wire::serial::encode(&hello)
        .map_err(|e| Error::serialization("hello", e))
        .and_then(|b| frame::encode(FrameKind::Hello, &b));
    match greeting {
        Ok(bytes) => {
            if write_all(ctl.as_fd(), &bytes).is_err() {
                std::process::exit(0);
            }
        }
        Err(_) => std::process::exit(3),
    }
    let mut children: Vec<Forked> = Vec::new();
    loop {
        let (ctl_ready, exited) = {
            let mut fds = Vec::with_capacity(children.len() + 1);
            fds.push(PollFd::new(&ctl, PollFlags::IN));
            for c in &children {
                fds.push(PollFd::new(&c.pidfd, PollFlags::IN));
            }
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => std::process::exit(3),
            }
            let exited: Vec<usize> = (1..fds.len())
                .filter(|&i| !fds[i].revents().is_empty())
                .collect();
            (!fds[0].revents().is_empty(), exited)
        };
        for &i in exited.iter().rev() {
            let c = children.swap_remove(i - 1);
            if let Ok(Some((_, st))) = waitpid(Some(c.pid), WaitOptions::NOHANG) {
                let _ = write_all(c.status.as_fd(), &encode_exit(st));
            }
        }
        if !ctl_ready {
            continue;
        }
        let mut byte = [MaybeUninit::uninit(); 1];
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(2);
        let n = match crate::sys::fds::recv(&ctl, &mut byte, &mut fds, RecvFlags::empty()) {
            Ok(r) => r.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => 0,
        };
        if n == 0 {
            // The parent is gone or done with us. Workers have their own channels.
            std::process::exit(0);
        }
        let Ok([channel, status]) = <[OwnedFd; 2]>::try_from(fds) else {
            continue; // malformed request: dropping the fds tells the parent
        };
        // SAFETY: `recv` returned n > 0 bytes, so the one byte is initialized.
        let what = unsafe { byte[0].assume_init() };
        let child_main = match what {
            FORK_WORKER => mains[0],
            FORK_PROCESS => mains[1],
            _ => continue, // unknown request: dropping the fds tells the parent
        };
        // SAFETY: this process is single-threaded (it never left `init`), so the child
        // inherits no lock held by another thread.
        let pid = super::retry_transient(|| match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            pid => Ok(pid),
        })
        .unwrap_or(-1);
        if pid == 0 {
            drop(ctl);
            drop(children);
            drop(status);
            child_main(channel);
        }
        drop(channel);
        let Some(pid) = Pid::from_raw(pid) else {
            continue; // fork failed: dropping the status pipe tells the parent
        };
        if write_all(status.as_fd(), &pid.as_raw_nonzero().get().to_le_bytes()).is_err() {
            continue;
        }
        match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => children.push(Forked { pid, pidfd, status }),
            Err(_) => {
                // Cannot watch it: wait for it right here rather than leave a zombie.
                if let Ok(Some((_, st))) = waitpid(Some(pid), WaitOptions::empty()) {
                    let _ = write_all(status.as_fd(), &encode_exit(st));
                }
            }
        }
    }
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
