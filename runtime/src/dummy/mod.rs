//! `multiproc::dummy`: the same Pool API on threads, for I/O-bound work (Python's
//! `multiprocessing.dummy`).
//!
//! Switch between processes and threads by changing one line:
//!
//! ```
//! use multiproc::prelude::*;
//!
//! #[pool_task]
//! fn fetch_len(url: String) -> usize { url.len() }
//!
//! # #[multiproc::main]
//! # fn main() -> multiproc::Result<()> {
//! let pool = multiproc::dummy::Pool::new(8)?;        // was: Pool::new(8)?
//! let lens = pool.map(fetch_len, vec!["a".to_string(), "bb".to_string()])?;
//! assert_eq!(lens, vec![1, 2]);
//! // Threads need nothing serialized, so closures work too:
//! let offset = 10;
//! assert_eq!(pool.apply(move |x: u32| x + offset, (1,))?, 11);
//! # Ok(()) }
//! ```
//!
//! # Threads, not rayon
//! The workers are plain OS threads taking jobs from one FIFO queue, as in Python's
//! `ThreadPool`. rayon's work-stealing pool is built for CPU-bound fork-join work and its
//! documentation warns against blocking in it; this pool exists for tasks that block on
//! files, sockets and subprocesses. For CPU-bound work on in-memory data, use rayon directly;
//! for CPU-bound work that needs isolation (or the GIL-free parallelism Python users come
//! for), use the process [`Pool`](crate::Pool).
//!
//! # Queues, pipes, values and locks
//! [`Queue`], [`JoinableQueue`], [`SimpleQueue`], [`pipe`], [`pipe_oneway`], [`Value`],
//! [`Array`], [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`],
//! [`Condition`] and [`Barrier`] are the thread versions of the process ones, with the same
//! methods and errors (timeouts, `Full`/`Empty`/`Closed`, `Eof`, `BrokenBarrier`, ...). They
//! move values between threads without serializing them: queue items need `Clone` (`put`
//! borrows, as on the process queue), pipe items are moved. Values hold any `T: Send`, not
//! only `Shareable` data; handles cannot cross into other processes; and a thread that panics
//! while holding a lock poisons nothing (the guard releases it while unwinding), so there is
//! no `OwnerDied`. Each file is named like its process twin (`queue.rs`, `pipe.rs`,
//! `sharedctypes.rs`, `synchronize.rs`).
//!
//! # Differences from the process pool
//! - Tasks need not be `#[pool_task]`s, nor serializable: any `Fn` that is `Send + Sync +
//!   'static` works, closures included; its results need only be `Send`.
//! - A thread cannot be killed: `terminate` cancels the jobs not yet started (they fail with
//!   `PoolTerminated`) and returns once the running ones have finished.
//! - No `maxtasksperchild` or start method; the initializer runs once in each thread.
//! - A panic is caught as on the process pool (`Error::TaskPanicked`, naming the function's
//!   type); the default panic hook also prints it, as for any thread.

/// `Debug` for thread objects: the type's name (their state sits behind a lock that printing
/// should not take).
macro_rules! debug_by_name {
    ($($ty:ident),* $(,)?) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!("dummy::", stringify!($ty)))
            }
        }
    )*};
    (<$g:tt> $($ty:ident),* $(,)?) => {$(
        impl<$g> std::fmt::Debug for $ty<$g> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!("dummy::", stringify!($ty)))
            }
        }
    )*};
    (guard $($ty:ident),* $(,)?) => {$(
        impl std::fmt::Debug for $ty<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!("dummy::", stringify!($ty)))
            }
        }
    )*};
}

mod monitor;
mod pipe;
mod queue;
mod sharedctypes;
mod synchronize;

pub use pipe::{pipe, pipe_oneway, Connection, Receiver, Sender};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use sharedctypes::{Array, ArrayGuard, Value};
pub use synchronize::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockGuard, RLock, Semaphore,
    SemaphoreGuard,
};

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::exec::imap::{exact_len, Feeder, Imap, Inbox};
use crate::exec::lifecycle::{default_chunksize, finish_on_drop, State, Threads};
use crate::exec::options::{self, Opts};
use crate::exec::result::{AsyncResult, Cell, MapSink};
use crate::registry::TaskFn;
use crate::task::panic::payload_message;

/// A job: runs the task (argument `false`) or, when cancelled, delivers `PoolTerminated`.
type Job = Box<dyn FnOnce(bool) + Send>;

struct JobQueue {
    jobs: VecDeque<Job>,
    state: State,
    /// Submitted jobs not yet finished.
    outstanding: usize,
    /// Threads exit once the queue is empty.
    stopping: bool,
}

struct Shared {
    queue: Mutex<JobQueue>,
    work: Condvar,
    idle: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, JobQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit(&self, jobs: Vec<Job>) -> Result<()> {
        let mut q = self.lock();
        if q.state != State::Running {
            return Err(Error::PoolClosed);
        }
        q.outstanding += jobs.len();
        q.jobs.extend(jobs);
        self.work.notify_all();
        Ok(())
    }

    fn thread_main(&self) {
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        break job;
                    }
                    if q.stopping {
                        return;
                    }
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            job(false);
            let mut q = self.lock();
            q.outstanding -= 1;
            if q.outstanding == 0 {
                self.idle.notify_all();
            }
        }
    }
}

type Initializer = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// Configures a thread [`Pool`]: threads and initializer.
/// The calls are the process version's: see [its example](crate::PoolBuilder).
#[must_use = "call build() to start the pool"]
#[derive(Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Initializer>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

impl PoolBuilder {
    /// Number of threads (named `processes` as in Python; default: the available CPUs).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f(initargs)` once at the start of every thread; a panic fails `build`.
    pub fn initializer<F, Args>(mut self, f: F, initargs: Args) -> Self
    where
        F: TaskFn<Args>,
        Args: Clone + Send + Sync + 'static,
    {
        self.initializer = Some(Arc::new(move || {
            catch_unwind(AssertUnwindSafe(|| {
                f.call(initargs.clone());
            }))
            .map_err(|p| payload_message(&*p))
        }));
        self
    }

    /// Starts the threads and returns once each has run the initializer.
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "a pool needs at least 1 thread".into(),
                ))
            }
            Some(n) => n,
            None => crate::cpu_count(),
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(JobQueue {
                jobs: VecDeque::new(),
                state: State::Running,
                outstanding: 0,
                stopping: false,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(processes);
        let mut failure = None;
        for k in 0..processes {
            let spawned = crate::sys::retry_transient(|| {
                // A failed spawn consumes its closure: build a fresh one per attempt.
                let (shared, tx, init) = (shared.clone(), tx.clone(), self.initializer.clone());
                std::thread::Builder::new()
                    .name(format!("multiproc-dummy-{k}"))
                    .spawn(move || {
                        let ok = init.map_or(Ok(()), |f| f());
                        let failed = ok.is_err();
                        let _ = tx.send(ok);
                        if !failed {
                            shared.thread_main();
                        }
                    })
            });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    failure = Some(Error::from(e));
                    break;
                }
            }
        }
        drop(tx);
        let pool = Pool {
            shared,
            threads: Threads::new(threads),
            processes,
        };
        for _ in 0..pool.threads.len() {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    failure.get_or_insert(Error::InitializerFailed { message });
                }
                Err(_) => break,
            }
        }
        if let Some(e) = failure {
            pool.terminate();
            return Err(e);
        }
        Ok(pool)
    }
}

/// Calls `f` with `args`, turning a panic into the same error the process pool gives.
fn run_one<F: TaskFn<Args>, Args>(f: &F, args: Args) -> Result<F::Output> {
    catch_unwind(AssertUnwindSafe(|| f.call(args))).map_err(|p| Error::TaskPanicked {
        task: std::any::type_name::<F>().to_owned(),
        message: payload_message(&*p),
        backtrace: None,
    })
}

/// A pool of threads with the process [`Pool`](crate::Pool)'s API. See the
/// [module documentation](self).
pub struct Pool {
    shared: Arc<Shared>,
    threads: Threads,
    processes: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dummy::Pool")
            .field("threads", &self.processes)
            .field("state", &self.shared.lock().state)
            .finish()
    }
}

impl Pool {
    /// A pool of `threads` threads.
    pub fn new(threads: usize) -> Result<Pool> {
        Pool::builder().processes(threads).build()
    }

    /// Configure a thread pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Number of threads.
    pub fn processes(&self) -> usize {
        self.processes
    }

    crate::exec::family::pool_family!(args: [Send + 'static], output: [Send + 'static]);

    /// [`apply_async`](Pool::apply_async) with options: reads `callback`, `error_callback`.
    pub fn apply_async_with<F, Args>(
        &self,
        f: F,
        args: Args,
        opts: Opts<F::Output, options::Async>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        opts.check()?;
        opts.policy.refuse_kill_after()?;
        let cell = Cell::new();
        let out = cell.clone();
        let callbacks = opts.callbacks;
        self.shared.submit(vec![Box::new(move |cancelled: bool| {
            if !cancelled && !out.claim() {
                return; // cancelled by its reader: already failed with `Cancelled`
            }
            let r = if cancelled {
                Err(Error::PoolTerminated)
            } else {
                run_one(&f, args)
            };
            out.set(r, &callbacks);
        })])?;
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
        Args: Send + 'static,
        F::Output: Send + 'static,
    {
        opts.policy.refuse_kill_after()?;
        if self.shared.lock().state != State::Running {
            return Err(Error::PoolClosed);
        }
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
        let f = Arc::new(f);
        let mut items = items.into_iter();
        let jobs: Vec<Job> = (0..parts)
            .map(|part| {
                let chunk: Vec<Args> = items.by_ref().take(chunksize).collect();
                let (f, sink) = (f.clone(), sink.clone());
                Box::new(move |cancelled: bool| {
                    if !cancelled && !sink.cell.claim() {
                        return;
                    }
                    let results = if cancelled {
                        chunk
                            .into_iter()
                            .map(|_| Err(Error::PoolTerminated))
                            .collect()
                    } else {
                        chunk.into_iter().map(|a| run_one(&*f, a)).collect()
                    };
                    sink.complete_part(part, results);
                }) as Job
            })
            .collect();
        self.shared.submit(jobs)?;
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
        A: Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: Send + 'static,
    {
        opts.policy.refuse_kill_after()?;
        if self.shared.lock().state != State::Running {
            return Err(Error::PoolClosed);
        }
        let chunksize = opts.chunksize.unwrap_or(1);
        let mut input = iter.into_iter();
        let inbox = Inbox::new(ordered, opts.progress.start(exact_len(&input)));
        let f = Arc::new(f);
        let shared = self.shared.clone();
        let feed_inbox = inbox.clone();
        let feed: Feeder<'p> = Box::new(move |first_part, max| {
            let mut jobs: Vec<Job> = Vec::new();
            let mut sizes = Vec::new();
            let mut done = false;
            while jobs.len() < max {
                let chunk: Vec<A> = input.by_ref().take(chunksize).collect();
                if chunk.is_empty() {
                    done = true;
                    break;
                }
                let part = first_part + jobs.len();
                sizes.push((part, chunk.len()));
                let (f, inbox) = (f.clone(), feed_inbox.clone());
                jobs.push(Box::new(move |cancelled: bool| {
                    if cancelled {
                        inbox.fail(part, chunk.len(), &Error::PoolTerminated);
                    } else if !inbox.is_cancelled() {
                        inbox.deliver(
                            part,
                            chunk.into_iter().map(|a| run_one(&*f, (a,))).collect(),
                        );
                    }
                }));
            }
            let used = jobs.len();
            if let Err(e) = shared.submit(jobs) {
                for (part, items) in sizes {
                    feed_inbox.fail(part, items, &e);
                }
            }
            (used, done)
        });
        Ok(Imap::new(inbox, feed, self.processes * 4, opts.timeout))
    }

    /// Stops accepting work; submitted work still completes.
    pub fn close(&self) {
        let mut q = self.shared.lock();
        if q.state == State::Running {
            q.state = State::Closed;
        }
    }

    /// Cancels the jobs not yet started (they fail with `PoolTerminated`) and returns once
    /// the running ones have finished: a thread cannot be killed.
    pub fn terminate(&self) {
        let cancelled: Vec<Job> = {
            let mut q = self.shared.lock();
            q.state = State::Terminated;
            q.stopping = true;
            let jobs: Vec<Job> = q.jobs.drain(..).collect();
            q.outstanding -= jobs.len();
            self.shared.work.notify_all();
            self.shared.idle.notify_all();
            jobs
        };
        for job in cancelled {
            job(true);
        }
        self.threads.join_all();
    }

    /// Waits for submitted work and the threads (after `close` or `terminate`).
    pub fn join(&self) -> Result<()> {
        let mut q = self.shared.lock();
        if q.state == State::Running {
            return Err(Error::PoolRunning);
        }
        while q.outstanding > 0 {
            q = self.shared.idle.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        q.stopping = true;
        self.shared.work.notify_all();
        drop(q);
        self.threads.join_all();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let terminated = self.shared.lock().state == State::Terminated;
        finish_on_drop(self, terminated);
    }
}

crate::exec::task_pool::task_pool_by_primitives!(Pool);
