//! `Process`: one `#[pool_task]` run in a child process of its own (Python's
//! `multiprocessing.Process`), plus the module helpers `current_process`, `parent_process`
//! and `active_children`.
//!
//! The child is this program re-executed (as for pool workers, so it is safe in threaded
//! parents); it receives the task, its arguments and the descriptors of any queues, pipes or
//! shared objects among them in one START frame, runs the task and exits: 0 when the task
//! returns, 1 when it panics, the code it passes to `std::process::exit`, or the signal that
//! killed it. The channel stays open for the child's life: a child exits as soon as its parent
//! is gone, even if the parent was SIGKILLed, so no child outlives the program.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::registry::{self, TaskFn};
use crate::role::{self, current_process, set_identity};
use crate::shm::fds::{self, SharedFd};
use crate::spawn::StartMethod;
use crate::spawn::{self, WorkerProcess};
use crate::sys::wait::lock;
use crate::wire::codec;
use crate::wire::conn::{send_frame_with_fds, Conn};
use crate::wire::frame::{self, Kind};
use crate::wire::handshake::ProcessInfo;

/// How a process ended.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn exit_with(code: i32) {
///     std::process::exit(code);
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let p = Process::spawn(exit_with, (3,))?;
///     assert_eq!(p.join()?, ExitStatus::Code(3));
///     assert_eq!(p.exitcode(), Some(3));
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code: 0 when the task returned, 1 when it panicked, or the code
    /// it gave `std::process::exit`.
    Code(i32),
    /// It was killed by this signal (15 after `terminate`, 9 after `kill`).
    Signal(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or minus the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    fn from_info(i: spawn::ExitInfo) -> ExitStatus {
        match (i.signal, i.code) {
            (Some(s), _) => ExitStatus::Signal(s),
            (None, Some(c)) => ExitStatus::Code(c),
            // Not a child of ours any more (already reaped elsewhere): report it as lost.
            (None, None) => ExitStatus::Code(255),
        }
    }
}

/// The START frame's body.
#[derive(Serialize, Deserialize)]
struct StartMsg {
    task: String,
    /// One-element argument chunk, as `run_chunk` takes it.
    args: Vec<u8>,
    me: ProcessInfo,
    parent: ProcessInfo,
}

/// Started children not yet reaped, for `active_children` and for the exit hook.
static CHILDREN: Mutex<Vec<Arc<Inner>>> = Mutex::new(Vec::new());

/// The children this process started that are still running. Children that have ended are
/// reaped on the way (as in Python).
///
/// ```no_run
/// use multiproc::prelude::*;
/// use std::time::Duration;
///
/// #[pool_task]
/// fn nap(ms: u64) {
///     std::thread::sleep(Duration::from_millis(ms));
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let p = Process::spawn(nap, (60_000,))?;
///     assert!(multiproc::active_children().iter().any(|c| c.pid() == p.pid()));
///     p.terminate()?;
///     p.join()?;
///     assert!(multiproc::active_children().is_empty());
///     Ok(())
/// }
/// ```
pub fn active_children() -> Vec<Process> {
    let all: Vec<Arc<Inner>> = lock(&CHILDREN).clone();
    all.into_iter()
        .filter_map(|inner| {
            let p = Process { inner };
            p.is_alive().then_some(p)
        })
        .collect()
}

/// A task running (or about to run) in a child process.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn work(n: u32) {
///     if n == 0 {
///         std::process::exit(7);
///     }
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let p = Process::new(work, (0,))?.with_name("worker");
///     p.start()?;
///     assert_eq!(p.join()?, ExitStatus::Code(7));
///     assert_eq!(p.exitcode(), Some(7));
///     Ok(())
/// }
/// ```
///
/// Dropping a running `Process` does not stop it: like Python, the program waits for its
/// non-daemon children when it exits and terminates its daemon children.
pub struct Process {
    inner: Arc<Inner>,
}

struct Inner {
    task: &'static str,
    state: Mutex<State>,
    /// Set when started: the descriptor that becomes readable when the child ends.
    exit_fd: OnceLock<OwnedFd>,
}

struct Meta {
    name: String,
    daemon: bool,
    start_method: StartMethod,
}

enum Phase {
    Created {
        args: Vec<u8>,
        fds: Vec<SharedFd>,
    },
    Running {
        child: WorkerProcess,
        /// Kept open for the child's life: its end closing is what tells it we are gone.
        _channel: UnixStream,
    },
    Finished {
        status: ExitStatus,
    },
    Closed,
}

struct State {
    meta: Meta,
    pid: Option<u32>,
    phase: Phase,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = lock(&self.inner.state);
        let phase = match &st.phase {
            Phase::Created { .. } => "initial".to_owned(),
            Phase::Running { .. } => "started".to_owned(),
            Phase::Finished { status } => format!("stopped ({status:?})"),
            Phase::Closed => "closed".to_owned(),
        };
        f.debug_struct("Process")
            .field("name", &st.meta.name)
            .field("pid", &st.pid)
            .field("daemon", &st.meta.daemon)
            .field("state", &phase)
            .finish()
    }
}

impl Process {
    /// Prepares `f(args)` to run in a child process; [`start`](Process::start) starts it.
    /// The arguments are encoded now, so an argument that cannot be sent fails here.
    pub fn new<F, Args>(f: F, args: Args) -> Result<Process>
    where
        F: TaskFn<Args>,
        Args: Serialize,
    {
        let entry = f.__entry()?;
        let (args, fds) = fds::collect(|| crate::wire::serial::encode(std::slice::from_ref(&args)));
        let args = args.map_err(|e| Error::serialization("a process argument", e))?;
        let id = role::next_child_number();
        Ok(Process {
            inner: Arc::new(Inner {
                task: entry.name,
                state: Mutex::new(State {
                    meta: Meta {
                        name: format!("Process-{id}"),
                        daemon: false,
                        start_method: StartMethod::Spawn,
                    },
                    pid: None,
                    phase: Phase::Created { args, fds },
                }),
                exit_fd: OnceLock::new(),
            }),
        })
    }

    /// `new` followed by `start`.
    pub fn spawn<F, Args>(f: F, args: Args) -> Result<Process>
    where
        F: TaskFn<Args>,
        Args: Serialize,
    {
        let p = Process::new(f, args)?;
        p.start()?;
        Ok(p)
    }

    /// Sets the name (builder style, before `start`).
    pub fn with_name(self, name: impl Into<String>) -> Self {
        self.set_name(name);
        self
    }

    /// How to start it (builder style, before `start`): `Spawn` (the default) re-executes
    /// the program; `ForkServer` forks it from the fork server the pools share (started if
    /// none runs, then kept for the program's life), which is faster. A forked child gets
    /// the environment, working directory and standard streams the fork server started
    /// with, not the parent's current ones (as with Python's `forkserver`).
    pub fn with_start_method(self, method: StartMethod) -> Self {
        lock(&self.inner.state).meta.start_method = method;
        self
    }

    /// Makes the process a daemon (builder style, before `start`).
    pub fn with_daemon(self, daemon: bool) -> Self {
        let _ = self.set_daemon(daemon);
        self
    }

    /// The process's name.
    pub fn name(&self) -> String {
        lock(&self.inner.state).meta.name.clone()
    }

    /// Renames the process (in this handle; the child keeps the name it started with).
    pub fn set_name(&self, name: impl Into<String>) {
        lock(&self.inner.state).meta.name = name.into();
    }

    /// Whether the process is a daemon: terminated, rather than waited for, when the program
    /// exits.
    pub fn daemon(&self) -> bool {
        lock(&self.inner.state).meta.daemon
    }

    /// Sets the daemon flag; an error once the process has started.
    pub fn set_daemon(&self, daemon: bool) -> Result<()> {
        let mut st = lock(&self.inner.state);
        if !matches!(st.phase, Phase::Created { .. }) {
            return Err(Error::ProcessState(
                "the daemon flag cannot change once the process has started".into(),
            ));
        }
        st.meta.daemon = daemon;
        Ok(())
    }

    /// Registered name of the task this process runs.
    pub fn task(&self) -> &'static str {
        self.inner.task
    }

    /// Starts the child process. An error if it was started before.
    pub fn start(&self) -> Result<()> {
        role::check_can_start_workers()?;
        let mut st = lock(&self.inner.state);
        let (args, fds) = match std::mem::replace(&mut st.phase, Phase::Closed) {
            Phase::Created { args, fds } => (args, fds),
            other => {
                st.phase = other;
                return Err(Error::ProcessState(
                    "a process can only be started once".into(),
                ));
            }
        };
        let msg = StartMsg {
            task: self.inner.task.to_owned(),
            args,
            me: ProcessInfo {
                name: st.meta.name.clone(),
                pid: 0,
                daemon: st.meta.daemon,
            },
            parent: current_process(),
        };
        let started = (|| {
            let (child, channel) = match st.meta.start_method {
                StartMethod::ForkServer => fork_from_server()?,
                StartMethod::Spawn => spawn::exec_child(role::PROCESS_FD_ENV)?,
            };
            let exit_fd = child
                .exit_fd()
                .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 3))
                .transpose()?;
            Ok::<_, Error>((child, channel, exit_fd))
        })();
        let (child, channel, exit_fd) = match started {
            Ok(v) => v,
            Err(e) => {
                st.phase = Phase::Created {
                    args: msg.args,
                    fds,
                };
                return Err(e);
            }
        };
        let Some(exit_fd) = exit_fd else {
            child.kill();
            return Err(Error::WorkerStart(
                "this kernel has no pidfd (Linux 5.3 or later is needed)".into(),
            ));
        };
        let _ = self.inner.exit_fd.set(exit_fd);
        st.pid = Some(child.pid);
        let mut msg = msg;
        msg.me.pid = child.pid;
        let body = crate::wire::serial::encode(&msg)
            .map_err(|e| Error::serialization("a START frame", e))?;
        let mut bytes = frame::encode(Kind::Start, &body)?;
        frame::set_fd_count(&mut bytes, 0, fds.len())?;
        // If the child died at once, the write fails; its exit status tells why.
        let _ = send_frame_with_fds(&channel, &bytes, &fds);
        tracing::debug!(target: "multiproc::process", pid = child.pid, name = %msg.me.name, "process started");
        st.phase = Phase::Running {
            child,
            _channel: channel,
        };
        drop(st);
        lock(&CHILDREN).push(self.inner.clone());
        Ok(())
    }

    /// Waits for the process to end and returns how it ended.
    pub fn join(&self) -> Result<ExitStatus> {
        self.join_inner(None)?
            .ok_or_else(|| Error::ProcessState("unreachable: join without timeout".into()))
    }

    /// Waits at most `timeout`; `Ok(None)` if the process is still running.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.join_inner(Some(timeout))
    }

    fn join_inner(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        {
            let st = lock(&self.inner.state);
            match &st.phase {
                Phase::Created { .. } => {
                    return Err(Error::ProcessState(
                        "cannot join a process that was not started".into(),
                    ))
                }
                Phase::Closed => return Err(closed()),
                Phase::Finished { status } => return Ok(Some(*status)),
                Phase::Running { .. } => {}
            }
        }
        if let Some(fd) = self.inner.exit_fd.get() {
            // Wait without holding the state lock, so terminate/kill work meanwhile.
            let deadline = timeout.and_then(crate::sys::wait::deadline_after);
            let ended =
                crate::sys::wait::readable(std::os::fd::AsFd::as_fd(fd), deadline).unwrap_or(false);
            if !ended {
                return Ok(None);
            }
        }
        Ok(Some(self.inner.reap()))
    }

    /// For `connection::wait`: a descriptor readable once the process ends (none before it
    /// starts), and whether it has ended already.
    pub(crate) fn readiness(&self) -> (Option<std::os::fd::OwnedFd>, bool) {
        match lock(&self.inner.state).phase {
            Phase::Created { .. } => return (None, false),
            Phase::Running { .. } => {}
            Phase::Finished { .. } | Phase::Closed => return (None, true),
        }
        match self.inner.exit_fd.get().map(|fd| fd.try_clone()) {
            Some(Ok(fd)) => (Some(fd), false),
            // No descriptor to watch: say it is ready, and `join` will tell.
            _ => (None, true),
        }
    }

    /// Whether the process has started and not yet ended.
    pub fn is_alive(&self) -> bool {
        let running = matches!(lock(&self.inner.state).phase, Phase::Running { .. });
        running
            && self
                .join_inner(Some(Duration::ZERO))
                .ok()
                .flatten()
                .is_none()
    }

    /// Python's `exitcode`: `None` while running (or not started), else the exit code, or
    /// minus the signal number that killed it.
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_status().map(ExitStatus::code)
    }

    /// How the process ended, `None` while it runs or before it started.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        if self.is_alive() {
            return None;
        }
        match lock(&self.inner.state).phase {
            Phase::Finished { status } => Some(status),
            _ => None,
        }
    }

    /// The child's process id, once started.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.inner.state).pid
    }

    /// Asks the process to stop (SIGTERM). Its exit code becomes -15 unless it handles the
    /// signal.
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::TERM)
    }

    /// Kills the process (SIGKILL); its exit code becomes -9.
    pub fn kill(&self) -> Result<()> {
        self.signal(Signal::KILL)
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        match &lock(&self.inner.state).phase {
            Phase::Running { child, .. } => {
                child.signal(sig);
                Ok(())
            }
            Phase::Finished { .. } => Ok(()),
            Phase::Created { .. } => Err(Error::ProcessState("the process was not started".into())),
            Phase::Closed => Err(closed()),
        }
    }

    /// Releases the handle's resources. An error while the process is still running (join
    /// or terminate it first); later calls on this handle fail.
    pub fn close(&self) -> Result<()> {
        if self.is_alive() {
            return Err(Error::ProcessState(
                "cannot close a process that is still running; join or terminate it first".into(),
            ));
        }
        lock(&self.inner.state).phase = Phase::Closed;
        lock(&CHILDREN).retain(|c| !Arc::ptr_eq(c, &self.inner));
        Ok(())
    }
}

fn closed() -> Error {
    Error::ProcessState("the process handle was closed".into())
}

impl Inner {
    /// Collects the exit status of a child that has ended (or is known to be ending).
    fn reap(self: &Arc<Self>) -> ExitStatus {
        let mut st = lock(&self.state);
        let status = match &mut st.phase {
            Phase::Running { child, .. } => {
                ExitStatus::from_info(child.reap(Duration::from_secs(3600 * 24 * 365)))
            }
            Phase::Finished { status } => return *status,
            _ => return ExitStatus::Code(255),
        };
        st.phase = Phase::Finished { status };
        tracing::debug!(target: "multiproc::process", pid = ?st.pid, status = ?status, "process exited");
        drop(st);
        lock(&CHILDREN).retain(|c| !Arc::ptr_eq(c, self));
        status
    }
}

/// Registers (once) the exit hook that waits for non-daemon children and terminates daemon
/// ones when the program exits, by returning from `main` or by `std::process::exit`.
pub(crate) fn register_exit_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn hook() {
            let _ = std::panic::catch_unwind(finish_children);
        }
        // SAFETY: registering a plain extern "C" function without captured state.
        unsafe {
            libc::atexit(hook);
        }
    });
}

/// Terminates daemon children (SIGTERM, then SIGKILL after a grace period) and joins the
/// others.
fn finish_children() {
    let children: Vec<Arc<Inner>> = lock(&CHILDREN).clone();
    let grace = Instant::now() + Duration::from_secs(2);
    for c in &children {
        let st = lock(&c.state);
        if let (true, Phase::Running { child, .. }) = (st.meta.daemon, &st.phase) {
            child.signal(Signal::TERM);
        }
    }
    for c in children {
        let daemon = lock(&c.state).meta.daemon;
        let p = Process { inner: c };
        if daemon {
            let left = grace.saturating_duration_since(Instant::now());
            if let Ok(None) = p.join_timeout(left) {
                let _ = p.kill();
            }
        }
        let _ = p.join();
    }
}

/// A child forked by the fork server, which is kept for the program's life once a
/// `Process` used it (as Python's is): later starts skip starting it. A server that fails
/// to fork is let go, so the next start tries a fresh one.
fn fork_from_server() -> Result<(WorkerProcess, UnixStream)> {
    use spawn::forkserver::{ForkServer, FORK_PROCESS};
    static KEPT: Mutex<Option<Arc<ForkServer>>> = Mutex::new(None);
    let server = {
        let mut kept = lock(&KEPT);
        match &*kept {
            Some(s) => s.clone(),
            None => {
                let s = ForkServer::shared()?;
                *kept = Some(s.clone());
                s
            }
        }
    };
    server.fork(FORK_PROCESS).inspect_err(|_| {
        lock(&KEPT).take();
    })
}

/// The child side: runs the task named in the START frame, then exits. Never returns.
pub(crate) fn child_main(fd: OwnedFd) -> ! {
    let code = match child_run(fd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("multiproc process {}: {e}", std::process::id());
            1
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn child_run(fd: OwnedFd) -> Result<i32> {
    let mut conn = Conn::new(fd)?;
    role::start_watchdog(&conn)?;
    let f = match conn.recv_frame()? {
        Some(f) if f.kind == Kind::Start => f,
        Some(f) => return Err(Error::Protocol(format!("expected START, got {:?}", f.kind))),
        None => return Ok(0), // the parent went away before sending the task
    };
    let msg: StartMsg = crate::wire::serial::decode(&f.body)
        .map_err(|e| Error::Protocol(format!("bad START frame: {e}")))?;
    let mut me = msg.me;
    me.pid = std::process::id();
    set_identity(me, msg.parent);
    let entry = registry::lookup_name(&msg.task).ok_or_else(|| Error::UnregisteredTask {
        name: msg.task.clone(),
    })?;
    let mut out = Vec::new();
    fds::provide(f.fds, || (entry.run_chunk)(&msg.args, &mut out))
        .map_err(|m| Error::serialization(format!("the arguments of `{}`", msg.task), m))?;
    // The default panic hook has already printed a panic's message.
    Ok(match codec::check_single_outcome(entry.name, &out) {
        Err(Error::TaskPanicked { .. }) => 1,
        _ => 0,
    })
}
