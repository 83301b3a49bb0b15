//! Starting worker processes: by re-executing the current program (`Spawn`, the default) or
//! by asking a small fork server to fork one (`ForkServer`).

pub(crate) mod forkserver;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{pidfd_send_signal, Pid, Signal};

use crate::error::{Error, Result};
use crate::role;

/// How a pool starts its worker processes.
///
/// There is deliberately no plain `Fork` (Python's old default on Linux): forking a program
/// that has other threads copies only the calling thread, so any lock another thread held at
/// that moment (the allocator's, stdout's, a logger's) stays locked forever in the child, which
/// then hangs at random. `ForkServer` gives fork's speed without that danger.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn pid() -> u32 { std::process::id() }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::builder()
///         .processes(2)
///         .start_method(StartMethod::ForkServer)
///         .build()?;
///     assert_ne!(pool.apply(pid, ())?, std::process::id());
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute the current program (`/proc/self/exe`) for each worker. Safe in
    /// multi-threaded parents, under `cargo test` and nextest. About 1 ms per worker, started
    /// in parallel.
    #[default]
    Spawn,
    /// Start one single-threaded server process by re-execution, then fork every worker from
    /// it. Much cheaper per worker (no exec, no re-linking), and still safe: the server never
    /// runs the program's own code and has only one thread when it forks. Shared by all pools
    /// of the process; it exits when the last pool using it is dropped.
    ForkServer,
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExitInfo {
    pub signal: Option<i32>,
    pub code: Option<i32>,
}

/// A started worker process; the parent's handle to signal and reap it.
pub(crate) struct WorkerProcess {
    pub pid: u32,
    pidfd: Option<OwnedFd>,
    kind: Kind,
    exit: Option<ExitInfo>,
}

enum Kind {
    Child(Child),
    /// Forked by the server, which reports its exit status on `status`.
    Forked {
        status: OwnedFd,
        _server: Arc<forkserver::ForkServer>,
    },
}

impl WorkerProcess {
    /// Sends SIGKILL, unless the process was already reaped.
    pub(crate) fn kill(&self) {
        if self.exit.is_some() {
            return;
        }
        match (&self.pidfd, &self.kind) {
            (Some(fd), _) => {
                let _ = pidfd_send_signal(fd, Signal::KILL);
            }
            (None, Kind::Child(_)) => {
                // Our own unreaped child: its pid cannot have been reused.
                if let Some(pid) = Pid::from_raw(self.pid as i32) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            (None, Kind::Forked { .. }) => {}
        }
    }

    /// Sends `sig`, unless the process was already reaped.
    pub(crate) fn signal(&self, sig: Signal) {
        if self.exit.is_some() {
            return;
        }
        if let Some(fd) = &self.pidfd {
            let _ = pidfd_send_signal(fd, sig);
        } else if let (Kind::Child(_), Some(pid)) = (&self.kind, Pid::from_raw(self.pid as i32)) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// A descriptor that becomes readable when the process ends (its pidfd, or the fork
    /// server's status pipe).
    pub(crate) fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.pidfd, &self.kind) {
            (_, Kind::Forked { status, .. }) => Some(status.as_fd()),
            (Some(p), _) => Some(p.as_fd()),
            (None, _) => None,
        }
    }

    /// Waits up to `grace` for the process to end, then kills it and reaps it.
    pub(crate) fn reap(&mut self, grace: Duration) -> ExitInfo {
        if let Some(e) = self.exit {
            return e;
        }
        if !self.wait_readable(grace) {
            self.kill();
        }
        let info = match &mut self.kind {
            Kind::Child(child) => match child.wait() {
                Ok(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    ExitInfo {
                        signal: st.signal(),
                        code: st.code(),
                    }
                }
                Err(_) => ExitInfo::default(),
            },
            Kind::Forked { status, .. } => {
                let mut buf = [0u8; 8];
                match read_exact_fd(status.as_fd(), &mut buf) {
                    Ok(()) => forkserver::decode_exit(buf),
                    Err(_) => ExitInfo::default(),
                }
            }
        };
        self.exit = Some(info);
        info
    }

    /// True once the process has ended (or its status is available), within `timeout`.
    fn wait_readable(&self, timeout: Duration) -> bool {
        let fd = match (&self.pidfd, &self.kind) {
            (_, Kind::Forked { status, .. }) => status.as_fd(),
            (Some(p), _) => p.as_fd(),
            (None, _) => return false,
        };
        wait_readable(fd, timeout)
    }
}

pub(crate) use crate::sys::{read_exact_fd, retry_transient};

/// Polls `fd` for readability up to `timeout`.
pub(crate) fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> bool {
    crate::sys::wait::readable(fd, crate::sys::wait::deadline_after(timeout)).unwrap_or(false)
}

/// Starts one worker; returns its handle and the parent's end of its channel.
pub(crate) fn start(
    method: StartMethod,
    server: Option<&Arc<forkserver::ForkServer>>,
) -> Result<(WorkerProcess, UnixStream)> {
    match (method, server) {
        (StartMethod::ForkServer, Some(server)) => server.fork(forkserver::FORK_WORKER),
        _ => exec_worker(),
    }
}

/// Builds the command that re-executes this program as a worker (or fork server), its
/// channel on stdin and `env` set to say so.
///
/// The channel travels as stdin so that no `pre_exec` hook is needed: std can then start the
/// child with `posix_spawn` (vfork-like, cheap however much memory the parent has) instead of
/// fork + exec (whose cost grows with the parent's page tables). The child moves the channel
/// off fd 0 and closes every other inherited descriptor first thing (`role::take_channel`).
pub(crate) fn reexec_command(env: &str, channel: OwnedFd) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    if let Some(test) = role::test_name() {
        // A test binary: select the test that registered itself; its first statement enters
        // worker mode. libtest's banner goes to stdout, so silence it.
        cmd.args([
            test.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
            "-q",
        ]);
        cmd.stdout(Stdio::null());
    }
    cmd.env(env, "0")
        .stdin(Stdio::from(channel))
        // Own process group: a Ctrl-C aimed at the program does not kill the workers under
        // it mid-task; they exit when the program does.
        .process_group(0);
    cmd
}

fn exec_worker() -> Result<(WorkerProcess, UnixStream)> {
    exec_child(role::WORKER_FD_ENV)
}

/// Re-executes this program in the role `env` names; returns the child and the parent's end
/// of its channel.
pub(crate) fn exec_child(env: &str) -> Result<(WorkerProcess, UnixStream)> {
    let (parent_end, child_end) = UnixStream::pair()?;
    let mut cmd = reexec_command(env, child_end.into());
    let child = retry_transient(|| cmd.spawn())
        .map_err(|e| Error::WorkerStart(format!("could not execute /proc/self/exe: {e}")))?;
    drop(cmd); // closes our copy of the child's end
    let pid = child.id();
    let pidfd = crate::sys::pidfd(pid as i32);
    Ok((
        WorkerProcess {
            pid,
            pidfd,
            kind: Kind::Child(child),
            exit: None,
        },
        parent_end,
    ))
}
