//! Which role this process plays: the program itself, or a child it re-executed (a pool
//! worker, the fork server, a `Process` child, the shared-memory tracker, a manager server),
//! and who it is (`current_process()`).
//!
//! A child is told its role by one environment variable naming its channel (always fd 0, its
//! stdin); [`take_channel`] adopts that channel. What each role then runs is decided at the
//! top of the crate (`child.rs`), the one place that names every role's main function.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::wire::conn::Conn;
use crate::wire::handshake::ProcessInfo;

/// Set (to "0": the channel is on stdin) by the parent on an exec'd pool worker.
pub(crate) const WORKER_FD_ENV: &str = "MULTIPROC_WORKER_FD";
/// Set (to "0") on a `Process` child.
pub(crate) const PROCESS_FD_ENV: &str = "MULTIPROC_PROCESS_FD";
/// Set (to "0": the control socket is on stdin) on the fork server.
pub(crate) const FORKSERVER_FD_ENV: &str = "MULTIPROC_FORKSERVER_FD";
/// Set (to "0") on the re-executed shared-memory tracker.
pub(crate) const TRACKER_FD_ENV: &str = "MULTIPROC_TRACKER_FD";
/// Set (to "0": the control channel is on stdin) on a manager's server process.
pub(crate) const MANAGER_FD_ENV: &str = "MULTIPROC_MANAGER_FD";

/// Every role's variable.
const ROLE_ENVS: [&str; 5] = [
    WORKER_FD_ENV,
    PROCESS_FD_ENV,
    FORKSERVER_FD_ENV,
    TRACKER_FD_ENV,
    MANAGER_FD_ENV,
];

static INITIALIZED: AtomicBool = AtomicBool::new(false);
static IN_WORKER: AtomicBool = AtomicBool::new(false);
static FIRST_TEST: OnceLock<String> = OnceLock::new();
thread_local! {
    static CURRENT_TEST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// `init()` ran in the program (it can start children that re-enter it as such).
pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

/// This process, forked by the fork server (a helper), is a `Process` child: it runs the
/// program's task and may start children of its own, as a re-executed one may.
pub(crate) fn mark_process_child() {
    IN_WORKER.store(false, Ordering::SeqCst);
    INITIALIZED.store(true, Ordering::SeqCst);
}

/// This process serves as a pool worker or one of the helper processes.
pub(crate) fn mark_in_worker() {
    IN_WORKER.store(true, Ordering::SeqCst);
}

/// Whether this process is a pool worker (or fork server).
/// Example: [`main`](crate::main).
pub fn is_worker() -> bool {
    IN_WORKER.load(Ordering::SeqCst)
}

/// Remembers the libtest name of the running `#[multiproc::test]`, so workers can re-execute
/// the test binary selecting this test.
pub(crate) fn remember_test(module_path: &str, fn_name: &str) {
    let path = match module_path.split_once("::") {
        Some((_crate, rest)) => format!("{rest}::{fn_name}"),
        None => fn_name.to_owned(),
    };
    let _ = FIRST_TEST.set(path.clone());
    CURRENT_TEST.with(|c| *c.borrow_mut() = Some(path));
}

/// The libtest name to select when re-executing a test binary, if this is one.
pub(crate) fn test_name() -> Option<String> {
    CURRENT_TEST
        .with(|c| c.borrow().clone())
        .or_else(|| FIRST_TEST.get().cloned())
}

/// Whether a helper process that re-executes this program (the shared-memory tracker) will
/// find its role: `init()` ran here, as the program or in a worker. Without it, the helper
/// would run the program's own code, which could start another helper, and so on.
pub(crate) fn may_reexec() -> bool {
    INITIALIZED.load(Ordering::SeqCst) || IN_WORKER.load(Ordering::SeqCst)
}

/// Refuses to start workers from a process that cannot be re-entered as a worker.
pub(crate) fn check_can_start_workers() -> Result<()> {
    if is_worker() {
        return Err(Error::InWorker);
    }
    if ROLE_ENVS.iter().any(|v| std::env::var_os(v).is_some()) {
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

/// If this process was started in the role `env` names, takes its channel from stdin: moves
/// it to a private close-on-exec descriptor, puts `/dev/null` on stdin, and closes every
/// other descriptor the process inherited, so nothing leaks into the child.
pub(crate) fn take_channel(env: &str) -> Option<OwnedFd> {
    let value = std::env::var(env).ok()?;
    // SAFETY: nothing else runs yet (this is the first statement of main), and the variable
    // must not reach the processes the child's tasks may start.
    unsafe { std::env::remove_var(env) };
    if value != "0" {
        eprintln!("multiproc: bad {env}={value}");
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
    // SAFETY: plain descriptor syscalls on descriptors this process owns; nothing else runs,
    // and no live handle refers to the descriptors closed (the process just started).
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

/// Exits the child as soon as the parent's end of the channel closes, even in the middle of
/// a long task: this is how children die with their parent, including a SIGKILLed one.
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
                // gone, nobody is waiting for this child's results.
                unsafe { libc::_exit(0) }
            })
    })?;
    Ok(())
}

// --- identity ------------------------------------------------------------------------------

static ME: OnceLock<(ProcessInfo, Option<ProcessInfo>)> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The next number for a child's default name (`Process-N`, `SpawnPoolWorker-N`): one
/// counter for both, as Python's.
pub(crate) fn next_child_number() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Records who this process is (a child: called once, before any task runs).
pub(crate) fn set_identity(me: ProcessInfo, parent: ProcessInfo) {
    let _ = ME.set((me, Some(parent)));
}

/// This process: `MainProcess` in the program, the name it was given in a child
/// (`Process-N` by default, `SpawnPoolWorker-N` / `ForkServerPoolWorker-N` in a pool worker).
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn who() -> (String, Option<String>) {
///     let parent = multiproc::parent_process().map(|p| p.name);
///     (multiproc::current_process().name, parent)
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     assert_eq!(multiproc::current_process().name, "MainProcess");
///     assert!(multiproc::parent_process().is_none());
///     let pool = Pool::new(1)?;
///     let (me, parent) = pool.apply(who, ())?;
///     assert!(me.starts_with("SpawnPoolWorker-"));
///     assert_eq!(parent.as_deref(), Some("MainProcess"));
///     Ok(())
/// }
/// ```
pub fn current_process() -> ProcessInfo {
    match ME.get() {
        Some((me, _)) => me.clone(),
        None => ProcessInfo {
            name: "MainProcess".into(),
            pid: std::process::id(),
            daemon: false,
        },
    }
}

/// The process that started this one, or `None` in the program's main process.
/// Example: [`current_process`].
pub fn parent_process() -> Option<ProcessInfo> {
    ME.get().and_then(|(_, parent)| parent.clone())
}
