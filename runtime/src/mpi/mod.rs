//! `multiproc::mpi` (the `mpi` feature): the same `#[pool_task]`s on an MPI cluster, one
//! worker per rank, as mpi4py's `MPIPoolExecutor` does for Python.
//!
//! ```no_run
//! use multiproc::prelude::*;
//!
//! #[pool_task]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[multiproc::main]
//! fn main() -> multiproc::Result<()> {
//!     // `mpirun -n 5 ./app`: rank 0 runs this, ranks 1..=4 serve `square`.
//!     let pool = multiproc::mpi::Pool::new()?;
//!     let v: Vec<u64> = pool.map(square, 0..1000u64)?;
//!     assert_eq!(v[10], 100);
//!     Ok(())
//! }
//! ```
//!
//! # How it runs
//! - Build with `--features mpi` (it links the system MPI: Open MPI or MPICH, through
//!   rsmpi; building needs the MPI headers and libclang) and start the program with the
//!   MPI launcher: `mpirun -n N ./app`, or `srun -n N ./app` under Slurm. Every rank runs
//!   the same binary. [`init`](crate::init) (what `#[multiproc::main]` inserts first)
//!   initialises MPI; ranks 1..N become workers there, before any user code runs, and never
//!   return; rank 0 goes on into `main`.
//! - [`Pool::new`] gives rank 0 a pool of the N − 1 worker ranks with the whole Python
//!   family (`apply`, `apply_async`, `map`, `imap`, `imap_unordered`, `starmap`, ...;
//!   chunksize, callbacks, timeouts on results, initializer), and it implements
//!   [`TaskPool`](crate::TaskPool), so code generic over pools runs on it unchanged. The
//!   tasks do not change at all.
//! - **Started without a launcher**, the program is a single process and MPI is not even
//!   initialised: `Pool::new` fails with [`Error::MpiLaunch`] saying how to start it (no
//!   silent local fallback: a cluster job that quietly ran on one core would be worse). So
//!   does a launch with one rank, which leaves no worker. Code that should run either way
//!   picks a backend with [`launched`].
//! - **Threads inside each rank**: [`PoolBuilder::threads_per_worker`] runs a chunk's items
//!   on a rayon pool of K threads inside the rank, so one rank per node uses all its cores
//!   (`mpirun --map-by ppr:1:node --bind-to none`, `srun --ntasks-per-node=1
//!   --cpus-per-task=K`). Launchers pin each rank to one core or socket by default (Open
//!   MPI binds to a core with two ranks or fewer), which would make the threads take turns:
//!   a rank that finds itself allowed fewer CPUs than its threads says so on stderr, once.
//!
//! # What differs from the process pool
//! - **MPI is fail-stop.** A rank that dies (a crash, the OOM killer, a `kill -9`) ends the
//!   whole job: the launcher kills every rank and exits non-zero; rank 0 prints why it was
//!   stopped. There is no `WorkerLost` and no replacement worker, so `retries` and
//!   `kill_after` (which kills a worker) are refused with `InvalidArgument`. A task that
//!   panics is an ordinary error, with its message, as everywhere.
//! - **Arguments travel as bytes only**: queues, pipes, locks and shared memory live on one
//!   machine, so a task argument carrying one is refused (`InvalidArgument`) before anything
//!   is sent. Use a [`Manager`](crate::Manager) over TCP for state the ranks share.
//! - `terminate` fails every queued and running call of the pool with `PoolTerminated` at
//!   once; a task already running on a rank runs to its end (MPI cannot stop one rank) and
//!   its result is dropped. At rank 0's exit the workers are told to stop; one still running
//!   a task 10 s later makes rank 0 abort the job rather than hang.
//! - The worker ranks are shared by every MPI pool of the program (one FIFO queue, each rank
//!   running one chunk at a time); an initializer runs on every rank when a pool is built.
//!   Callbacks run on rank 0's MPI driver thread: keep them short.
//! - An idle rank probes for work about a thousand times a second and sleeps in between: it
//!   does not spin a core (a blocking MPI receive would, in most MPI libraries).

mod driver;
pub(crate) mod rank;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use driver::{Cluster, MpiJob, Reply};
pub(crate) use rank::enter;
use rank::Launch;

use crate::error::{Error, Result};
use crate::exec::imap::{exact_len, Feeder, Imap, Inbox};
use crate::exec::lifecycle::{default_chunksize, finish_on_drop, State};
use crate::exec::options::{self, Opts, Policy};
use crate::exec::result::{AsyncResult, Cell, MapSink};
use crate::registry::TaskFn;
use crate::sys::wait::lock;
use crate::wire::codec::{self, ChunkFailure};
use crate::wire::frame::{self, Kind};

/// Whether an MPI launcher started this program with worker ranks to serve a [`Pool`]:
/// the test to pick a backend by.
///
/// ```no_run
/// # use multiproc::prelude::*;
/// # #[pool_task] fn square(x: u64) -> u64 { x * x }
/// # fn demo() -> multiproc::Result<()> {
/// let v = if multiproc::mpi::launched() {
///     multiproc::mpi::Pool::new()?.map(square, 0..100u64)?
/// } else {
///     Pool::new(4)?.map(square, 0..100u64)?
/// };
/// # Ok(()) }
/// ```
pub fn launched() -> bool {
    matches!(rank::launch(), Launch::Root { size } if size > 1)
}

/// The number of ranks of this MPI job, rank 0 included (1 when not launched by MPI).
///
/// ```no_run
/// println!("{} ranks", multiproc::mpi::world_size());
/// ```
pub fn world_size() -> usize {
    match rank::launch() {
        Launch::Root { size } => size,
        Launch::NotLaunched => 1,
    }
}

/// An initializer's task name and RUN frame.
type Initializer = (&'static str, Vec<u8>);

/// Configures an MPI [`Pool`]: workers, threads inside each, initializer.
///
/// ```no_run
/// # use multiproc::prelude::*;
/// # #[pool_task] fn setup(level: u32) {}
/// # fn demo() -> multiproc::Result<()> {
/// let pool = multiproc::mpi::Pool::builder()
///     .threads_per_worker(8)
///     .initializer(setup, (3,))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "call build() to make the pool"]
pub struct PoolBuilder {
    processes: Option<usize>,
    threads: usize,
    initializer: Option<Result<Initializer>>,
    start_timeout: Duration,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            threads: 1,
            initializer: None,
            start_timeout: Duration::from_secs(60),
        }
    }
}

impl PoolBuilder {
    /// Use only the first `n` worker ranks (default: all, N − 1). More than there are, or
    /// 0, is an error at build.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Each rank runs a chunk's items on a rayon pool of `k` threads, as
    /// [`crate::PoolBuilder::threads_per_worker`] does for local workers (same rules:
    /// results in order, a panic its item's own, chunks of at least `k` items to spread;
    /// `imap`'s default chunksize becomes `k`). 0 is an error at build.
    pub fn threads_per_worker(mut self, k: usize) -> Self {
        self.threads = k;
        self
    }

    /// A `#[pool_task]` run on every worker rank while the pool is built; a panic fails
    /// `build` with `InitializerFailed`.
    pub fn initializer<F, Args>(mut self, f: F, initargs: Args) -> Self
    where
        F: TaskFn<Args>,
        Args: Serialize,
    {
        self.initializer = Some(f.__entry().and_then(|entry| {
            let run = codec::run_frame(0, entry.name, std::slice::from_ref(&initargs))?;
            refuse_handles(run.fds.len())?;
            Ok((entry.name, run.bytes.into_vec()))
        }));
        self
    }

    /// How long the first pool waits for every worker rank's hello (default 60 s).
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = d;
        self
    }

    /// Meets the worker ranks (the first time), runs the initializer on each, and returns
    /// the pool.
    pub fn build(self) -> Result<Pool> {
        crate::role::check_can_start_workers()?;
        let size = match rank::launch() {
            Launch::NotLaunched => {
                return Err(Error::MpiLaunch(
                    "this program was not started by an MPI launcher, so it has no worker \
                     ranks: run it as `mpirun -n N <program>` (or `srun -n N`), N ≥ 2"
                        .into(),
                ))
            }
            Launch::Root { size: 1 } => {
                return Err(Error::MpiLaunch(
                    "the MPI job has a single rank, which leaves no worker: launch it with \
                     `mpirun -n N`, N ≥ 2"
                        .into(),
                ))
            }
            Launch::Root { size } => size,
        };
        if self.threads == 0 {
            return Err(Error::InvalidArgument(
                "threads_per_worker must be at least 1".into(),
            ));
        }
        let processes = match self.processes {
            None => size - 1,
            Some(n) if (1..size).contains(&n) => n,
            Some(n) => {
                return Err(Error::InvalidArgument(format!(
                    "{n} worker ranks asked for; this MPI job has {}",
                    size - 1
                )))
            }
        };
        let initializer = self.initializer.transpose()?;
        let cluster = driver::cluster(size, self.start_timeout)?;
        static POOLS: AtomicU64 = AtomicU64::new(1);
        let pool = Pool {
            cluster,
            id: POOLS.fetch_add(1, Ordering::Relaxed),
            processes,
            threads: self.threads,
            state: Arc::new(PoolState {
                st: Mutex::new((State::Running, 0)),
                idle: Condvar::new(),
            }),
            jobs: AtomicU64::new(0),
        };
        if let Some((name, run)) = initializer {
            pool.initialize(name, &run)?;
        }
        Ok(pool)
    }
}

fn refuse_handles(fds: usize) -> Result<()> {
    if fds == 0 {
        return Ok(());
    }
    Err(Error::InvalidArgument(
        "an MPI rank may be on another machine: queues, pipes, locks and shared memory \
         cannot travel to it (share state through a Manager over TCP)"
            .into(),
    ))
}

/// kill_after kills a worker and retries replace one; an MPI job loses all ranks with one.
fn refuse_policy(policy: &Policy) -> Result<()> {
    if policy.kill_after.is_some() || policy.retries.is_some() {
        return Err(Error::InvalidArgument(
            "kill_after and retries need a local process pool: MPI is fail-stop, one lost \
             rank ends the whole job"
                .into(),
        ));
    }
    Ok(())
}

/// A call's state and how many of its jobs are not finished.
struct PoolState {
    st: Mutex<(State, usize)>,
    idle: Condvar,
}

impl PoolState {
    fn finished(&self) {
        let mut st = lock(&self.st);
        st.1 -= 1;
        if st.1 == 0 {
            self.idle.notify_all();
        }
    }
}

/// A pool of an MPI job's worker ranks, with the process [`Pool`](crate::Pool)'s API. See
/// the [module documentation](self).
pub struct Pool {
    cluster: &'static Cluster,
    id: u64,
    processes: usize,
    threads: usize,
    state: Arc<PoolState>,
    jobs: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpi::Pool")
            .field("processes", &self.processes)
            .field("threads_per_worker", &self.threads)
            .field("state", &lock(&self.state.st).0)
            .finish()
    }
}

/// One chunk's results from its reply.
fn outcomes<R: DeserializeOwned>(task: &str, items: usize, reply: Reply) -> Vec<Result<R>> {
    let all = |e: Error| (0..items).map(|_| Err(e.clone())).collect();
    let bytes = match reply {
        Reply::Ran(bytes) => bytes,
        Reply::Failed(e) => return all(e),
        Reply::Dropped => return Vec::new(),
    };
    let parsed = (|| -> Result<Vec<Result<R>>> {
        let (kind, _, body) = frame::parse_whole(&bytes)?;
        let (_, rest) = frame::split_job_id(body)?;
        match kind {
            Kind::Result => codec::decode_outcomes::<R>(task, rest, items),
            Kind::JobFailed => Err(ChunkFailure::decode_error(rest, task)),
            other => Err(Error::Protocol(format!(
                "unexpected {other:?} frame from an MPI rank"
            ))),
        }
    })();
    parsed.unwrap_or_else(all)
}

impl Pool {
    /// A pool of every worker rank (N − 1 under `mpirun -n N`).
    pub fn new() -> Result<Pool> {
        Pool::builder().build()
    }

    /// Configure an MPI pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Number of worker ranks the pool uses.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The process ids of the worker ranks (each on its own node's pid space).
    pub fn pids(&self) -> Vec<u32> {
        self.cluster.pids[..self.processes].to_vec()
    }

    crate::exec::family::pool_family!(args: [Serialize], output: [DeserializeOwned + Send + 'static]);

    /// The message for a chunk of calls of `task`: a thread count, then its RUN frame.
    fn message<A: Serialize>(&self, task: &str, args: &[A]) -> Result<Vec<u8>> {
        let id = self.jobs.fetch_add(1, Ordering::Relaxed);
        let mut run = codec::run_frame(id, task, args)?;
        refuse_handles(run.fds.len())?;
        run.set_parallel(self.threads > 1 && args.len() > 1);
        let mut msg = Vec::with_capacity(4 + run.bytes.len());
        msg.extend_from_slice(
            &u32::try_from(self.threads)
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        msg.extend_from_slice(&run.bytes);
        Ok(msg)
    }

    fn job(
        &self,
        worker: Option<usize>,
        msg: Vec<u8>,
        claim: Box<dyn Fn() -> bool + Send>,
        done: impl FnOnce(Reply) + Send + 'static,
    ) -> MpiJob {
        let state = self.state.clone();
        MpiJob {
            pool: self.id,
            worker,
            msg,
            claim,
            done: Box::new(move |reply| {
                done(reply);
                state.finished();
            }),
        }
    }

    fn submit(&self, jobs: Vec<MpiJob>) -> Result<()> {
        {
            let mut st = lock(&self.state.st);
            if st.0 != State::Running {
                return Err(Error::PoolClosed);
            }
            st.1 += jobs.len();
        }
        self.cluster.submit(jobs);
        Ok(())
    }

    fn refuse_if_stopped(&self) -> Result<()> {
        match lock(&self.state.st).0 {
            State::Running => Ok(()),
            _ => Err(Error::PoolClosed),
        }
    }

    /// Runs the initializer on every worker rank of the pool, in parallel.
    fn initialize(&self, name: &'static str, run: &[u8]) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut jobs = Vec::with_capacity(self.processes);
        for w in 0..self.processes {
            let mut msg = Vec::with_capacity(4 + run.len());
            msg.extend_from_slice(&1u32.to_le_bytes());
            msg.extend_from_slice(run);
            let tx = tx.clone();
            jobs.push(self.job(Some(w), msg, Box::new(|| true), move |reply| {
                let _ = tx.send(outcomes::<()>(name, 1, reply).pop().unwrap_or(Ok(())));
            }));
        }
        drop(tx);
        self.submit(jobs)?;
        let mut failure = None;
        for r in rx {
            match r {
                Ok(()) => {}
                Err(Error::TaskPanicked { message, .. }) => {
                    failure.get_or_insert(Error::InitializerFailed { message });
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                self.terminate();
                Err(e)
            }
        }
    }

    /// [`apply_async`](Pool::apply_async) with options: reads `callback`, `error_callback`.
    pub fn apply_async_with<F, Args>(
        &self,
        f: F,
        args: Args,
        opts: Opts<F::Output, options::Async>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize,
        F::Output: DeserializeOwned + Send + 'static,
    {
        opts.check()?;
        refuse_policy(&opts.policy)?;
        let entry = f.__entry()?;
        self.refuse_if_stopped()?;
        let msg = self.message(entry.name, std::slice::from_ref(&args))?;
        let cell = Cell::new();
        let (claim, out) = (cell.clone(), cell.clone());
        let callbacks = opts.callbacks;
        let task = entry.name;
        let job = self.job(None, msg, Box::new(move || claim.claim()), move |reply| {
            if let Some(r) = outcomes::<F::Output>(task, 1, reply).pop() {
                out.set(r, &callbacks);
            }
        });
        self.submit(vec![job])?;
        Ok(AsyncResult::new(cell))
    }

    fn starmap_inner<F, Args, K>(
        &self,
        f: F,
        items: Vec<Args>,
        opts: Opts<Vec<F::Output>, K>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<Args>,
        Args: Serialize,
        F::Output: DeserializeOwned + Send + 'static,
    {
        refuse_policy(&opts.policy)?;
        let entry = f.__entry()?;
        self.refuse_if_stopped()?;
        let chunksize = opts
            .chunksize
            .unwrap_or_else(|| default_chunksize(items.len(), self.processes));
        let parts = items.len().div_ceil(chunksize);
        let sink = Arc::new(MapSink::<F::Output>::new(
            parts,
            items.len(),
            opts.callbacks,
            opts.progress.start(Some(items.len())),
        ));
        let cell = sink.cell.clone();
        if parts == 0 {
            sink.complete_empty();
            return Ok(AsyncResult::new(cell));
        }
        // Encode everything first: an argument that does not serialize fails the call
        // before any work starts.
        let task = entry.name;
        let jobs = items
            .chunks(chunksize)
            .enumerate()
            .map(|(part, chunk)| {
                let msg = self.message(task, chunk)?;
                let (claim, sink) = (sink.cell.clone(), sink.clone());
                let n = chunk.len();
                Ok(
                    self.job(None, msg, Box::new(move || claim.claim()), move |reply| {
                        if !matches!(reply, Reply::Dropped) {
                            sink.complete_part(part, outcomes::<F::Output>(task, n, reply));
                        }
                    }),
                )
            })
            .collect::<Result<Vec<MpiJob>>>()?;
        self.submit(jobs)?;
        Ok(AsyncResult::new(cell))
    }

    fn imap_inner<'p, F, A, I>(
        &'p self,
        f: F,
        iter: I,
        opts: Opts<F::Output, options::Iter>,
        ordered: bool,
    ) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + 'p,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static,
    {
        refuse_policy(&opts.policy)?;
        let entry = f.__entry()?;
        self.refuse_if_stopped()?;
        let task = entry.name;
        let chunksize = opts.chunksize.unwrap_or(self.threads);
        let mut input = iter.into_iter().map(|a| (a,));
        let inbox = Inbox::new(ordered, opts.progress.start(exact_len(&input)));
        let feed_inbox = inbox.clone();
        let feed: Feeder<'p> = Box::new(move |first_part, max| {
            let mut jobs = Vec::new();
            let mut sizes = Vec::new();
            let mut used = 0;
            let mut done = false;
            while used < max {
                let chunk: Vec<(A,)> = input.by_ref().take(chunksize).collect();
                if chunk.is_empty() {
                    done = true;
                    break;
                }
                let part = first_part + used;
                used += 1;
                let n = chunk.len();
                match self.message(task, &chunk) {
                    Ok(msg) => {
                        let (claim, inbox) = (feed_inbox.clone(), feed_inbox.clone());
                        sizes.push((part, n));
                        jobs.push(self.job(
                            None,
                            msg,
                            Box::new(move || !claim.is_cancelled()),
                            move |reply| {
                                if !matches!(reply, Reply::Dropped) {
                                    inbox.deliver(part, outcomes::<F::Output>(task, n, reply));
                                }
                            },
                        ));
                    }
                    // This chunk cannot be sent: its items fail at their position.
                    Err(e) => feed_inbox.fail(part, n, &e),
                }
            }
            if !jobs.is_empty() {
                if let Err(e) = self.submit(jobs) {
                    for (part, n) in sizes {
                        feed_inbox.fail(part, n, &e);
                    }
                }
            }
            (used, done)
        });
        // Two chunks per worker keep every rank busy while results travel back.
        Ok(Imap::new(inbox, feed, self.processes * 2, opts.timeout))
    }

    /// Stops accepting work; submitted work still completes.
    pub fn close(&self) {
        let mut st = lock(&self.state.st);
        if st.0 == State::Running {
            st.0 = State::Closed;
        }
    }

    /// Fails every queued and running call of this pool with `PoolTerminated` and returns:
    /// a task already running on a rank finishes there, its result dropped.
    pub fn terminate(&self) {
        lock(&self.state.st).0 = State::Terminated;
        self.cluster.terminate(self.id);
        let mut st = lock(&self.state.st);
        while st.1 > 0 {
            st = self.state.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits for submitted work (after `close` or `terminate`; else `PoolRunning`).
    pub fn join(&self) -> Result<()> {
        let mut st = lock(&self.state.st);
        if st.0 == State::Running {
            return Err(Error::PoolRunning);
        }
        while st.1 > 0 {
            st = self.state.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let terminated = lock(&self.state.st).0 == State::Terminated;
        finish_on_drop(self, terminated);
    }
}

crate::exec::task_pool::task_pool_by_primitives!(Pool);
