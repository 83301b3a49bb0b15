//! `PoolBuilder`: processes, initializer, maxtasksperchild, start method.

use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use super::sched::{Config, Shared};
use super::slot::slot_main;
use super::Pool;
use crate::error::{Error, Result};
use crate::exec::options::Policy;
use crate::registry::TaskFn;
use crate::spawn::StartMethod;
use crate::wire::codec;
use crate::wire::handshake::WorkerLimits;

/// Configures and starts a [`Pool`], like the keyword arguments of Python's `Pool(...)`.
///
/// ```no_run
/// # use multiproc::prelude::*;
/// # #[pool_task] fn setup(level: u32) {}
/// # fn demo() -> multiproc::Result<()> {
/// let pool = Pool::builder()
///     .processes(4)
///     .initializer(setup, (3,))
///     .maxtasksperchild(1000)
///     .start_method(StartMethod::ForkServer)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "call build() to start the pool"]
pub struct PoolBuilder {
    processes: Option<usize>,
    maxtasksperchild: Option<u64>,
    method: StartMethod,
    initializer: Option<Result<super::sched::Initializer>>,
    start_timeout: Duration,
    policy: Policy,
    max_rss: Option<u64>,
    address_space: Option<u64>,
    threads: Option<usize>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            maxtasksperchild: None,
            method: StartMethod::default(),
            initializer: None,
            start_timeout: Duration::from_secs(30),
            policy: Policy::default(),
            max_rss: None,
            address_space: None,
            threads: None,
        }
    }
}

impl PoolBuilder {
    /// Number of worker processes (default: the available CPUs). 0 is an error at build.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Replace each worker after it has run this many jobs (Python's `maxtasksperchild`; a
    /// chunk of a `map` counts as one job, as in Python). 0 is an error at build.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasksperchild = Some(n);
        self
    }

    /// How workers are started (default: [`StartMethod::Spawn`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// A `#[pool_task]` run once in every worker before it serves (Python's `initializer`
    /// and `initargs`), for instance to fill a worker-global cache. If it panics in a worker
    /// started by `build`, `build` fails; if it panics in a replacement worker, the pool is
    /// marked broken instead of restarting workers forever.
    pub fn initializer<F, Args>(mut self, f: F, initargs: Args) -> Self
    where
        F: TaskFn<Args>,
        Args: Serialize,
    {
        self.initializer = Some(f.__entry().and_then(|entry| {
            let (args, fds) = codec::encode_call(&initargs)?;
            // The worker's lane rides with the initializer's handles.
            if fds.len() >= crate::shm::fds::MAX_FDS {
                return Err(Error::TooLarge {
                    what: format!("an initializer carrying {} handles", fds.len()),
                    limit: crate::shm::fds::MAX_FDS - 1,
                });
            }
            Ok((entry.name.to_owned(), args, fds))
        }));
        self
    }

    /// The default `Opts::kill_after` of every call: a task running longer than `limit` is
    /// killed with its worker (`Error::TaskTimedOut`). It also bounds dropping the pool
    /// (close + join), which otherwise waits as long as the slowest task.
    pub fn kill_after(mut self, limit: Duration) -> Self {
        self.policy.kill_after = Some(limit);
        self
    }

    /// The default `Opts::retries` of every call: a task whose worker dies runs again, up to
    /// `n` more times (at-least-once: make tasks idempotent). Off by default.
    pub fn retries(mut self, n: u32) -> Self {
        self.policy.retries = Some(n);
        self
    }

    /// Replaces a worker whose resident memory is above `bytes` after a task, before its
    /// next one (billiard's `max_memory_per_child`): a worker that leaks or caches too much
    /// is recycled, its queued jobs run elsewhere, nothing fails.
    pub fn max_memory_per_child(mut self, bytes: u64) -> Self {
        self.max_rss = Some(bytes);
        self
    }

    /// A hard limit on each worker's address space (`RLIMIT_AS`): an allocation past it
    /// fails in that worker (Rust aborts the process: the task gets `Error::WorkerLost`, the
    /// worker is replaced) instead of taking the machine's memory. Leave room for the
    /// program itself (its code, thread stacks: tens of MiB).
    pub fn worker_memory_limit(mut self, bytes: u64) -> Self {
        self.address_space = Some(bytes);
        self
    }

    /// Each worker runs the items of a chunk on a rayon pool of `k` threads (default 1: one
    /// item at a time), so that `processes × k` covers a machine: a few processes for
    /// isolation, threads for the cores inside each. Results keep input order and a panic
    /// stays its item's error. Only chunks of more than one item spread, so give `map`s and
    /// `imap`s a `chunksize` of at least `k` (`imap`'s default becomes `k`); a call with
    /// `kill_after`, which times each item, runs its items one by one; and a task whose
    /// arguments are not `Send` runs them one by one too. When a worker dies inside a
    /// parallel chunk, which item killed it is not known: that chunk runs again with its
    /// items one at a time, so a poison item is still the only one blamed (at the cost of
    /// one more lost worker). 0 is an error at build.
    ///
    /// ```no_run
    /// # use multiproc::prelude::*;
    /// # #[pool_task] fn simulate(seed: u64) -> f64 { seed as f64 }
    /// # fn demo() -> multiproc::Result<()> {
    /// let pool = Pool::builder().processes(2).threads_per_worker(8).build()?;
    /// let v = pool.map_with(simulate, 0..10_000u64, Opts::new().chunksize(256))?;
    /// # Ok(()) }
    /// ```
    pub fn threads_per_worker(mut self, k: usize) -> Self {
        self.threads = Some(k);
        self
    }

    /// How long a starting worker may take to answer the handshake (default 30 s).
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = d;
        self
    }

    /// Starts the workers (in parallel) and returns once all are ready.
    pub fn build(self) -> Result<Pool> {
        crate::role::check_can_start_workers()?;
        let processes = match self.processes {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "a pool needs at least 1 process".into(),
                ))
            }
            Some(n) => n,
            None => crate::cpu_count(),
        };
        if self.maxtasksperchild == Some(0) {
            return Err(Error::InvalidArgument(
                "maxtasksperchild must be at least 1".into(),
            ));
        }
        let threads = match self.threads {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "threads_per_worker must be at least 1".into(),
                ))
            }
            Some(k) => k,
            None => 1,
        };
        let initializer = self.initializer.transpose()?;
        let shared = Shared::new(Config {
            processes,
            method: self.method,
            maxtasksperchild: self.maxtasksperchild,
            initializer,
            start_timeout: self.start_timeout,
            policy: self.policy,
            limits: WorkerLimits {
                max_rss: self.max_rss,
                address_space: self.address_space,
            },
            threads,
        })?;
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(processes);
        let mut spawn_error = None;
        for k in 0..processes {
            let shared = shared.clone();
            let tx = tx.clone();
            let spawned = crate::sys::retry_transient(|| {
                // A failed spawn consumes its closure: build a fresh one per attempt.
                let (shared, tx) = (shared.clone(), tx.clone());
                std::thread::Builder::new()
                    .name(format!("multiproc-slot-{k}"))
                    .spawn(move || slot_main(shared, k, tx))
            });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    spawn_error = Some(Error::from(e));
                    break;
                }
            }
        }
        drop(tx);
        let pool = Pool::from_parts(shared, threads);
        if let Some(e) = spawn_error {
            pool.terminate();
            return Err(e);
        }
        let mut first_error = None;
        for _ in 0..processes {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(Error::WorkerStart("a slot thread died".into()));
                    break;
                }
            }
        }
        if let Some(e) = first_error {
            tracing::warn!(target: "multiproc::pool", error = %e, "pool failed to start");
            pool.terminate();
            return Err(e);
        }
        tracing::info!(target: "multiproc::pool", processes, method = ?self.method, "pool started");
        Ok(pool)
    }
}
