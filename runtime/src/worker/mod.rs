//! The child side: how a process discovers it was started as a worker, the handshake, and the
//! loop that serves RUN frames until the parent says SHUTDOWN or goes away.

mod outbox;
pub(crate) mod panic;
mod run;

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use run::run_chunk;

use crate::error::{Error, Result};
use crate::process::ProcessInfo;
use crate::registry;
use crate::shm::lane::{self, Claim, Lane};
use crate::wire::codec::{self, ChunkFailure};
use crate::wire::conn::Conn;
use crate::wire::conn::{BUFFER, IDLE_BUFFER};
use crate::wire::frame::{self, Kind};
use crate::wire::PROTOCOL_VERSION;
use outbox::Outbox;

/// Set (to "0": the channel is on stdin) by the parent on an exec'd worker.
pub(crate) const WORKER_FD_ENV: &str = "MULTIPROC_WORKER_FD";
/// Set (to "0": the channel is on stdin) by the parent on a `Process` child.
pub(crate) const PROCESS_FD_ENV: &str = "MULTIPROC_PROCESS_FD";
/// Set (to "0": the control socket is on stdin) by the parent on an exec'd fork server.
pub(crate) const FORKSERVER_FD_ENV: &str = "MULTIPROC_FORKSERVER_FD";

static INITIALIZED: AtomicBool = AtomicBool::new(false);
static IN_WORKER: AtomicBool = AtomicBool::new(false);
static FIRST_TEST: OnceLock<String> = OnceLock::new();
thread_local! {
    static CURRENT_TEST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// First frame a worker sends. Its layout never changes, so any two versions can at least
/// tell each other apart.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Hello {
    pub version: u32,
    pub build_id: u64,
    pub pid: u32,
}

/// The parent's answer to HELLO: who the worker is and what to run before serving. The
/// worker's lane travels as the frame's last descriptor.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Welcome {
    /// Task name and encoded one-element argument chunk.
    pub initializer: Option<(String, Vec<u8>)>,
    /// The worker's identity (`SpawnPoolWorker-N`, daemon; its pid is its own to fill in).
    pub me: ProcessInfo,
    /// The pool's process.
    pub parent: ProcessInfo,
}

/// Makes this program able to start worker processes. Call it first thing in `main` (or use
/// `#[multiproc::main]`, which does).
///
/// In the program's own process this only records that the program is ready. In a process
/// that a pool started as a worker, it never returns: it serves tasks and exits. Code before
/// the call runs in every worker too, which is why it must come first.
pub fn init() {
    for (env, role_main) in ROLES {
        if let Some(fd) = take_fd_env(env) {
            IN_WORKER.store(true, Ordering::SeqCst);
            role_main(fd);
        }
    }
    crate::process::register_exit_hook();
    if let Some(fd) = take_fd_env(PROCESS_FD_ENV) {
        INITIALIZED.store(true, Ordering::SeqCst);
        crate::process::child_main(fd);
    }
    INITIALIZED.store(true, Ordering::SeqCst);
}

type RoleMain = fn(OwnedFd) -> !;

/// The helper processes this program can be re-executed as: the variable that says so (its
/// channel's descriptor) and the role's main, which never returns.
const ROLES: [(&str, RoleMain); 4] = [
    (FORKSERVER_FD_ENV, crate::spawn::forkserver::serve),
    (WORKER_FD_ENV, serve),
    (
        crate::shared_memory::TRACKER_FD_ENV,
        crate::shared_memory::tracker_main,
    ),
    (
        crate::manager::server::MANAGER_FD_ENV,
        crate::manager::server::manager_main,
    ),
];

/// Called by `#[multiproc::test]`: remembers the test's libtest name, so workers can
/// re-execute the test binary selecting this test, then behaves like [`init`].
#[doc(hidden)]
pub fn enter_test(module_path: &str, fn_name: &str) {
    let path = match module_path.split_once("::") {
        Some((_crate, rest)) => format!("{rest}::{fn_name}"),
        None => fn_name.to_owned(),
    };
    let _ = FIRST_TEST.set(path.clone());
    CURRENT_TEST.with(|c| *c.borrow_mut() = Some(path));
    init();
}

/// The libtest name to select when re-executing a test binary, if this is one.
pub(crate) fn test_name() -> Option<String> {
    CURRENT_TEST
        .with(|c| c.borrow().clone())
        .or_else(|| FIRST_TEST.get().cloned())
}

/// Whether this process is a pool worker (or fork server).
pub fn is_worker() -> bool {
    IN_WORKER.load(Ordering::SeqCst)
}

/// Refuses to start workers from a process that cannot be re-entered as a worker.
pub(crate) fn check_can_start_workers() -> Result<()> {
    if is_worker() {
        return Err(Error::InWorker);
    }
    if ROLES
        .iter()
        .map(|r| r.0)
        .chain([PROCESS_FD_ENV])
        .any(|v| std::env::var_os(v).is_some())
    {
        return Err(Error::NotInitialized(
            "this process was started as a multiproc worker, but its main never called \
             multiproc::init(); add #[multiproc::main] to main (or call multiproc::init() as \
             its first line) so workers do not run the program's own code"
                .into(),
        ));
    }
    if !INITIALIZED.load(Ordering::SeqCst) {
        return Err(Error::NotInitialized(
            "multiproc::init() was never called: put #[multiproc::main] on main (or call \
             multiproc::init() as its first line), and use #[multiproc::test] instead of \
             #[test] in tests, so that worker processes can re-enter this program as workers"
                .into(),
        ));
    }
    Ok(())
}

/// If this process was started as a worker (or fork server), takes its channel from stdin:
/// moves it to a private close-on-exec descriptor, puts `/dev/null` on stdin, and closes every
/// other descriptor the process inherited, so nothing leaks into the worker.
fn take_fd_env(name: &str) -> Option<OwnedFd> {
    let value = std::env::var(name).ok()?;
    // SAFETY: nothing else runs yet (this is the first statement of main), and the variable
    // must not reach the processes the worker's tasks may start.
    unsafe { std::env::remove_var(name) };
    if value != "0" {
        eprintln!("multiproc: bad {name}={value}");
        std::process::exit(101);
    }
    match adopt_channel_from_stdin() {
        Ok(fd) => Some(fd),
        Err(e) => {
            eprintln!("multiproc: cannot take the worker channel: {e}");
            std::process::exit(101);
        }
    }
}

fn adopt_channel_from_stdin() -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let channel = rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 3)?;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: plain descriptor syscalls on descriptors this process owns; nothing else runs.
    unsafe {
        if libc::dup2(null.as_raw_fd(), 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        drop(null);
        let keep = channel.as_raw_fd() as libc::c_uint;
        crate::sys::close_range(3, keep - 1);
        crate::sys::close_range(keep + 1, libc::c_uint::MAX);
    }
    Ok(channel)
}

/// Worker main loop. Never returns.
pub(crate) fn serve(fd: OwnedFd) -> ! {
    IN_WORKER.store(true, Ordering::SeqCst);
    panic::install_hook();
    let code = match serve_inner(fd) {
        Ok(()) => 0,
        // The parent closed the channel while this worker was answering (terminate, or the
        // parent exited): nobody is left to tell.
        Err(Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            0
        }
        Err(e) => {
            eprintln!("multiproc worker {}: {e}", std::process::id());
            3
        }
    };
    std::process::exit(code)
}

fn serve_inner(fd: OwnedFd) -> Result<()> {
    let mut conn = Conn::new(fd)?;
    start_watchdog(&conn)?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        build_id: registry::build_id(),
        pid: std::process::id(),
    };
    let body = bincode::serialize(&hello).map_err(|e| Error::serialization("hello", e))?;
    conn.send_all(&frame::encode(Kind::Hello, &body)?)?;
    let (welcome, mut init_fds) = match conn.recv_frame()? {
        Some(f) if f.kind == Kind::Welcome => (
            bincode::deserialize::<Welcome>(&f.body)
                .map_err(|e| Error::Protocol(format!("bad WELCOME: {e}")))?,
            f.fds,
        ),
        Some(f) => {
            return Err(Error::Protocol(format!(
                "expected WELCOME, got {:?}",
                f.kind
            )))
        }
        None => return Ok(()),
    };
    // The lane rides last, after the initializer's own descriptors.
    let lane = init_fds
        .pop()
        .ok_or_else(|| Error::Protocol("WELCOME without a lane".into()))?;
    let lane = lane::install(Lane::attach(lane)?);
    let mut me = welcome.me;
    me.pid = std::process::id();
    crate::process::set_identity(me, welcome.parent);
    let ready: std::result::Result<(), String> = match welcome.initializer {
        None => Ok(()),
        Some((name, args)) => crate::shm::fds::provide(init_fds, || run_initializer(&name, &args)),
    };
    let failed = ready.is_err();
    let body = bincode::serialize(&ready).map_err(|e| Error::serialization("ready", e))?;
    conn.send_all(&frame::encode(Kind::Ready, &body)?)?;
    if failed {
        // The parent will not send work; wait for it to close the channel.
        while conn.recv_frame()?.is_some() {}
        return Ok(());
    }
    // A job slower than this is not held back: the one behind it is likely slow too.
    const SHORT_JOB: std::time::Duration = std::time::Duration::from_micros(200);
    let outbox = Outbox::new();
    let mut out = Vec::with_capacity(BUFFER);
    loop {
        // Held results go out before the worker could block waiting for its next job.
        if outbox.holding() && !conn.frame_ready()? {
            outbox.flush(&mut conn)?;
        }
        let Some(f) = conn.recv_frame()? else {
            return Ok(()); // parent closed the channel
        };
        match f.kind {
            Kind::Run => {
                let run = codec::parse_run(&f.body)?;
                match lane.claim(run.epoch, run.seq) {
                    Claim::Granted => {}
                    // The parent took this job back to run it elsewhere.
                    Claim::Withdrawn => continue,
                    Claim::OutOfOrder { epoch, seq } => {
                        return Err(Error::Protocol(format!(
                            "job ({}, {}) arrived with the lane at ({epoch}, {seq})",
                            run.epoch, run.seq
                        )))
                    }
                }
                let started = std::time::Instant::now();
                lane.running(run.seq, 0);
                crate::shm::fds::provide(f.fds, || run_job(&run, &mut out))?;
                lane.idle(run.seq);
                let hold = f.flags & frame::FLAG_MAY_DELAY != 0 && started.elapsed() < SHORT_JOB;
                outbox.push(&mut conn, &mut out, hold)?;
                if out.capacity() > IDLE_BUFFER {
                    out = Vec::with_capacity(BUFFER);
                    conn.trim_heap_later();
                }
            }
            Kind::Shutdown => {
                outbox.flush(&mut conn)?;
                return Ok(());
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {other:?} frame in worker"
                )))
            }
        }
    }
}

/// Runs one RUN frame's chunk, appending its RESULT (or JOB_FAILED) frame to `out`.
fn run_job(run: &codec::Run<'_>, out: &mut Vec<u8>) -> Result<()> {
    let mark = out.len();
    let start = frame::begin(out, Kind::Result);
    out.extend_from_slice(&run.job_id.to_le_bytes());
    let failure = match registry::lookup_name(run.name) {
        None => Some(ChunkFailure::Unregistered(run.name.to_owned())),
        Some(entry) => (entry.run_chunk)(run.args, out)
            .err()
            .map(ChunkFailure::BadArgs),
    };
    let failure = match failure {
        Some(f) => Some(f),
        None => frame::finish(out, start)
            .err()
            .map(|e| ChunkFailure::BadArgs(e.to_string())),
    };
    if let Some(failure) = failure {
        out.truncate(mark);
        let start = frame::begin(out, Kind::JobFailed);
        out.extend_from_slice(&run.job_id.to_le_bytes());
        bincode::serialize_into(&mut *out, &failure)
            .map_err(|e| Error::serialization("a chunk failure", e))?;
        frame::finish(out, start)?;
    }
    Ok(())
}

fn run_initializer(name: &str, args: &[u8]) -> std::result::Result<(), String> {
    let entry = registry::lookup_name(name)
        .ok_or_else(|| format!("initializer `{name}` is not a registered task"))?;
    let mut out = Vec::new();
    (entry.run_chunk)(args, &mut out)?;
    codec::check_single_outcome(name, &out).map_err(|e| match e {
        Error::TaskPanicked { message, .. } => message,
        other => other.to_string(),
    })
}

/// Exits the worker as soon as the parent's end of the channel closes, even in the middle of
/// a long task: this is how workers die with their parent, including a SIGKILLed one.
pub(crate) fn start_watchdog(conn: &Conn) -> Result<()> {
    crate::sys::retry_transient(|| {
        // A failed spawn consumes its closure: a fresh descriptor per attempt.
        let fd = rustix::io::fcntl_dupfd_cloexec(conn.as_fd(), 3)?;
        std::thread::Builder::new()
            .name("multiproc-watchdog".into())
            .spawn(move || {
                use rustix::event::{poll, PollFd, PollFlags};
                let mut fds = [PollFd::new(&fd, PollFlags::RDHUP)];
                loop {
                    match poll(&mut fds, None) {
                        Ok(_) if !fds[0].revents().is_empty() => break,
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(_) => break,
                    }
                }
                // SAFETY: _exit ends the process without running anything else; the parent is
                // gone, nobody is waiting for this worker's results.
                unsafe { libc::_exit(0) }
            })
    })?;
    Ok(())
}
