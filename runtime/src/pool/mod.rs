//! `Pool`: Python's `multiprocessing.Pool`, with worker processes that run `#[pool_task]`
//! functions.

mod builder;
mod feed;
pub(crate) mod job;
mod outbox;
mod sched;
mod sinks;
mod slot;
mod watch;
pub(crate) mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use builder::PoolBuilder;

use sched::{Job, Shared, State};
use sinks::ApplySink;

use crate::error::{Error, Result};
use crate::exec::imap::{self, exact_len, Imap};
use crate::exec::lifecycle::{default_chunksize, finish_on_drop, Threads};
use crate::exec::options::{self, Opts};
use crate::exec::result::{AsyncResult, Cell, MapSink};
use crate::registry::TaskFn;
use crate::wire::codec;

/// A pool of worker processes.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn square(x: u64) -> u64 { x * x }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(4)?;
///     let v: Vec<u64> = pool.map(square, 0..1000u64)?;
///     assert_eq!(v[10], 100);
///     Ok(())
/// }
/// ```
///
/// # Calls
/// Python's names: [`apply`](Pool::apply), [`apply_async`](Pool::apply_async),
/// [`map`](Pool::map), [`map_async`](Pool::map_async), [`starmap`](Pool::starmap),
/// [`starmap_async`](Pool::starmap_async), [`imap`](Pool::imap),
/// [`imap_unordered`](Pool::imap_unordered). Arguments go as a tuple, as in Python:
/// `pool.apply(add, (1, 2))`, `pool.apply(square, (4,))`. Python's keyword arguments
/// (`chunksize`, `callback`, `error_callback`, `timeout`) are an [`Opts`] passed to the
/// `*_with` twin of each method.
///
/// # Failures
/// A task that panics gives `Error::TaskPanicked` for that item only; a worker that dies
/// mid-task gives `Error::WorkerLost` for the task it was running and is replaced; no call
/// hangs because a worker went away.
///
/// # Shutdown
/// [`close`](Pool::close) stops accepting work, [`join`](Pool::join) waits for the work and
/// the workers, [`terminate`](Pool::terminate) kills the workers at once (pending results
/// fail with `Error::PoolTerminated`). **Dropping** a pool closes and joins it: submitted work
/// completes first. If the dropping thread is panicking, the pool is terminated instead.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Threads,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .field("state", &self.shared.state())
            .finish()
    }
}

impl Pool {
    /// A pool of `processes` workers started by re-execution. Same as
    /// `Pool::builder().processes(processes).build()`.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Configure a pool: processes, initializer, maxtasksperchild, start method.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    fn from_parts(shared: Arc<Shared>, threads: Vec<JoinHandle<()>>) -> Pool {
        Pool {
            shared,
            threads: Threads::new(threads),
        }
    }

    /// Number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// Process ids of the workers currently serving (they change when workers are replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    crate::exec::family::pool_family!(args: [Serialize], output: [DeserializeOwned + Send + 'static]);

    fn job<A: Serialize>(
        &self,
        task: &'static str,
        args: &[A],
        part: usize,
        sink: Arc<dyn sched::Sink>,
    ) -> Result<Job> {
        let id = self.shared.next_job_id();
        let run = codec::run_frame(id, task, args)?;
        Ok(Job::new(id, task, run, args.len(), part, sink))
    }

    /// A call's `kill_after` and `retries`, the pool's defaults where it sets none.
    fn policy<T, K>(&self, opts: &Opts<T, K>) -> options::Policy {
        opts.policy.or(self.shared.config.policy)
    }

    fn refuse_if_stopped(&self) -> Result<()> {
        match self.shared.state() {
            State::Running => Ok(()),
            _ => Err(Error::PoolClosed),
        }
    }

    /// [`apply_async`](Pool::apply_async) with options: reads `callback` and `error_callback`.
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
        let entry = f.__entry()?;
        self.refuse_if_stopped()?;
        let policy = self.policy(&opts);
        let cell = Cell::new();
        let sink = Arc::new(ApplySink {
            cell: cell.clone(),
            callbacks: opts.callbacks,
        });
        let job = self.job(entry.name, std::slice::from_ref(&args), 0, sink)?;
        self.shared.submit(vec![job.with_policy(policy)])?;
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
        let entry = f.__entry()?;
        self.refuse_if_stopped()?;
        let policy = self.policy(&opts);
        let chunksize = opts.chunksize.unwrap_or_else(|| {
            default_chunksize(items.len(), self.processes())
                .min(pipelined_chunk(entry.name, &items))
        });
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
        // Sized up front: collected through a `Result`, the list grew by doubling (at
        // chunksize 1, ~2% of the parent's CPU went to copying it).
        let mut jobs = Vec::with_capacity(parts);
        for (part, chunk) in items.chunks(chunksize).enumerate() {
            let mut job = self.job(entry.name, chunk, part, sink.clone())?;
            job.run.set_may_delay();
            jobs.push(job.with_policy(policy));
        }
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
        A: Serialize + 'p,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static,
    {
        let entry = f.__entry()?;
        self.refuse_if_stopped()?;
        let input = iter.into_iter().map(|a| (a,));
        let inbox = imap::Inbox::new(ordered, opts.progress.start(exact_len(&input)));
        let chunksize = opts.chunksize.unwrap_or(self.shared.config.threads);
        let feed = feed::process_feeder(
            &self.shared,
            (entry.name, self.policy(&opts)),
            input,
            chunksize,
            inbox.clone(),
        );
        // Twice what fills every worker's pipeline (`FAST_PIPELINE_DEPTH`), so that while
        // the consumer tops the window up (once half of it is free) the workers still have
        // queued work: with one pipeline's worth, each worker idled between batches
        // (`hot imap1`: 470k -> 560-620k items/s at chunksize 1). A constant bound all the
        // same.
        let window = self.processes() * 2 * sched::FAST_PIPELINE_DEPTH;
        Ok(Imap::new(inbox, feed, window, opts.timeout))
    }

    /// Stops accepting work; submitted work still completes (Python's `close`).
    pub fn close(&self) {
        self.shared.close();
    }

    /// Kills the workers now. Pending and running calls fail with `Error::PoolTerminated`
    /// (Python's `terminate`). Returns once every worker has been reaped.
    pub fn terminate(&self) {
        self.shared.terminate();
        self.threads.join_all();
        // Jobs a slot thread put back while it was being stopped have nobody to run them.
        self.shared.fail_pending(&Error::PoolTerminated);
    }

    /// Waits for submitted work to complete and the workers to exit (Python's `join`).
    /// The pool must be closed or terminated first, else `Error::PoolRunning`.
    pub fn join(&self) -> Result<()> {
        if self.shared.state() == State::Running {
            return Err(Error::PoolRunning);
        }
        self.shared.drain_and_stop();
        self.threads.join_all();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        finish_on_drop(self, self.shared.state() == State::Terminated);
    }
}

crate::exec::task_pool::task_pool_by_primitives!(Pool);

/// The most items a default chunk of `task` holds: as many as fit in half of what may wait
/// in a busy worker's socket (`sched::PIPELINE_BYTES`), frame and all, by the largest
/// encoding among the first, middle and last items. Each worker then has its next chunk
/// queued while it runs one; a bigger chunk goes to idle workers only, and each worker
/// would wait a round trip through the parent between its chunks.
fn pipelined_chunk<A: Serialize>(task: &str, items: &[A]) -> usize {
    let per_item = [0, items.len() / 2, items.len().saturating_sub(1)]
        .into_iter()
        .filter_map(|i| crate::wire::serial::encoded_len(items.get(i)?).ok())
        .max()
        .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX).max(1));
    let room =
        (sched::PIPELINE_BYTES / 2).saturating_sub(crate::wire::codec::run_frame_overhead(task));
    (room / per_item).max(1)
}

#[cfg(test)]
mod chunk_tests {
    use super::pipelined_chunk;

    #[test]
    fn default_chunks_of_small_items_fit_the_pipeline_twice() {
        let task = "a_task";
        let frame_of = |n: usize| crate::wire::codec::run_frame(1, task, &vec![(7u64,); n]);
        let n = pipelined_chunk(task, &[(7u64,); 3]);
        // Two whole frames of `n` items fit what may wait in a busy worker's socket, and
        // not two of one item more.
        let len = |n| frame_of(n).map(|f| f.bytes.len()).unwrap_or(usize::MAX);
        assert!(
            2 * len(n) <= super::sched::PIPELINE_BYTES,
            "{n}: {}",
            len(n)
        );
        assert!(
            2 * len(n + 1) > super::sched::PIPELINE_BYTES,
            "{n}: {}",
            len(n + 1)
        );
        // The largest of the items sampled sets the size: a short first item does not.
        let words = [String::new(), "x".repeat(1000), "y".repeat(10)];
        assert!(pipelined_chunk(task, &words) <= 32 * 1024 / 1000);
        // Items bigger than the pipeline go one per chunk; no items, no cap to speak of.
        assert_eq!(pipelined_chunk(task, &[(vec![0u8; 1 << 20],)]), 1);
        assert!(pipelined_chunk::<(u64,)>(task, &[]) > 30 * 1024);
    }
}
