//! The child side, at the top of the crate: [`init`] finds out which role this process was
//! started in and runs that role's main function. This is the one place that names them all.

use std::os::fd::OwnedFd;

use crate::role::{
    self, FORKSERVER_FD_ENV, MANAGER_FD_ENV, PROCESS_FD_ENV, TRACKER_FD_ENV, WORKER_FD_ENV,
};

type RoleMain = fn(OwnedFd) -> !;

/// The helper processes this program can be re-executed as: the variable that says so (its
/// channel's descriptor) and the role's main, which never returns.
const ROLES: [(&str, RoleMain); 4] = [
    (FORKSERVER_FD_ENV, fork_server_main),
    (WORKER_FD_ENV, crate::pool::worker::serve),
    (TRACKER_FD_ENV, crate::shared_memory::tracker_main),
    (MANAGER_FD_ENV, crate::manager::server::manager_main),
];

/// The fork server forks pool workers and `Process` children.
fn fork_server_main(fd: OwnedFd) -> ! {
    crate::spawn::forkserver::serve(fd, [crate::pool::worker::serve, forked_process_main])
}

/// A `Process` child forked by the fork server: it becomes what a re-executed one is (a
/// program that may start processes of its own), not a worker.
fn forked_process_main(fd: OwnedFd) -> ! {
    role::mark_process_child();
    crate::process::register_exit_hook();
    crate::process::child_main(fd)
}

/// Makes this program able to start worker processes. Call it first thing in `main` (or use
/// `#[multiproc::main]`, which does).
///
/// In the program's own process this only records that the program is ready. In a process
/// that a pool started as a worker, it never returns: it serves tasks and exits. Code before
/// the call runs in every worker too, which is why it must come first.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() -> multiproc::Result<()> {
///     multiproc::init(); // what #[multiproc::main] inserts
///     let pool = Pool::new(2)?;
///     assert_eq!(pool.map(square, 1..4u64)?, [1, 4, 9]);
///     Ok(())
/// }
/// ```
pub fn init() {
    for (env, role_main) in ROLES {
        if let Some(fd) = role::take_channel(env) {
            role::mark_in_worker();
            role_main(fd);
        }
    }
    crate::process::register_exit_hook();
    if let Some(fd) = role::take_channel(PROCESS_FD_ENV) {
        role::mark_initialized();
        crate::process::child_main(fd);
    }
    role::mark_initialized();
    // Under an MPI launcher, worker ranks serve here and never return.
    #[cfg(feature = "mpi")]
    crate::mpi::enter();
}

/// Called by `#[multiproc::test]`: remembers the test's libtest name, so workers can
/// re-execute the test binary selecting this test, then behaves like [`init`].
#[doc(hidden)]
pub fn enter_test(module_path: &str, fn_name: &str) {
    role::remember_test(module_path, fn_name);
    init();
}
