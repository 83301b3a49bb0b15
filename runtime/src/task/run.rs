//! The dispatcher every `#[pool_task]` instantiates for its own argument tuple.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::registry::TaskFn;
use crate::wire::codec;

/// Decodes a chunk of argument tuples, calls `f` on each under `catch_unwind`, and appends
/// one outcome per item to `out`. Used by the code `#[pool_task]` generates.
#[doc(hidden)]
pub fn run_chunk<Args, F>(input: &[u8], out: &mut Vec<u8>, f: F) -> Result<(), String>
where
    Args: DeserializeOwned,
    F: TaskFn<Args>,
    F::Output: Serialize,
{
    let args: Vec<Args> = crate::wire::serial::decode(input).map_err(|e| e.to_string())?;
    // Only the job the worker runs reports its items: a task nested inside another (a
    // barrier's action) must not move the mark the parent reads if the worker dies.
    let marks = (!super::panic::running_task()).then(crate::shm::lane::ItemMarks::for_running_job);
    for (i, a) in args.into_iter().enumerate() {
        if let Some(marks) = marks.as_ref().filter(|_| i > 0) {
            marks.mark(i);
        }
        let outcome = super::panic::in_task(|| catch_unwind(AssertUnwindSafe(|| f.call(a))));
        match outcome {
            Ok(r) => codec::push_ok(out, &r),
            Err(payload) => codec::push_panic(out, &super::panic::take(payload)),
        }
    }
    Ok(())
}

/// The same chunk, its items spread over `pool`'s threads: outcomes in item order, each
/// item's panic its own. Items are not marked in the lane one by one (several run at once):
/// the worker marks the whole job as running in parallel instead.
fn run_chunk_par<Args, F>(
    input: &[u8],
    out: &mut Vec<u8>,
    f: &F,
    pool: &rayon::ThreadPool,
) -> Result<(), String>
where
    Args: DeserializeOwned + Send,
    F: TaskFn<Args> + Sync,
    F::Output: Serialize,
{
    use rayon::prelude::*;
    let args: Vec<Args> = crate::wire::serial::decode(input).map_err(|e| e.to_string())?;
    // Each item encodes its own outcome on the thread that ran it, so outputs need not be
    // `Send`; the parts are joined in item order.
    let parts: Vec<Vec<u8>> = pool.install(|| {
        args.into_par_iter()
            .map(|a| {
                let mut part = Vec::new();
                match super::panic::in_task(|| catch_unwind(AssertUnwindSafe(|| f.call(a)))) {
                    Ok(r) => codec::push_ok(&mut part, &r),
                    Err(payload) => codec::push_panic(&mut part, &super::panic::take(payload)),
                }
                part
            })
            .collect()
    });
    out.reserve(parts.iter().map(Vec::len).sum());
    for part in parts {
        out.extend_from_slice(&part);
    }
    Ok(())
}

/// A task about to run a chunk on threads, if its arguments may cross threads: the code
/// `#[pool_task]` generates calls `(&Par::new(f)).run_par(..)`, which resolves to
/// [`ParRun`] when `Args: Send` (and the task is `Sync`, as functions are) and to
/// [`ParNone`] (answering `None`: run the items one by one) otherwise.
#[doc(hidden)]
pub struct Par<Args, F>(F, PhantomData<fn() -> Args>);

impl<Args, F> std::fmt::Debug for Par<Args, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Par")
    }
}

impl<Args, F> Par<Args, F> {
    pub fn new(f: F) -> Self {
        Par(f, PhantomData)
    }
}

/// See [`Par`].
#[doc(hidden)]
pub trait ParRun {
    fn run_par(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        pool: &rayon::ThreadPool,
    ) -> Option<Result<(), String>>;
}

impl<Args, F> ParRun for Par<Args, F>
where
    Args: DeserializeOwned + Send,
    F: TaskFn<Args> + Sync,
    F::Output: Serialize,
{
    fn run_par(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        pool: &rayon::ThreadPool,
    ) -> Option<Result<(), String>> {
        Some(run_chunk_par::<Args, F>(input, out, &self.0, pool))
    }
}

/// See [`Par`].
#[doc(hidden)]
pub trait ParNone {
    fn run_par(
        &self,
        _input: &[u8],
        _out: &mut Vec<u8>,
        _pool: &rayon::ThreadPool,
    ) -> Option<Result<(), String>> {
        None
    }
}

impl<T> ParNone for &T {}

/// Runs one RUN frame's chunk, appending its RESULT (or JOB_FAILED) frame to `out`: on
/// `threads` when given and the task's arguments can cross threads; otherwise one item at a
/// time, after calling `one_by_one` (the worker moves its lane's mark back to per-item).
pub(crate) fn run_job(
    run: &codec::Run<'_>,
    out: &mut Vec<u8>,
    threads: Option<&rayon::ThreadPool>,
    one_by_one: impl FnOnce(),
) -> Result<(), crate::error::Error> {
    use crate::wire::codec::ChunkFailure;
    use crate::wire::frame::{self, Kind};
    let mark = out.len();
    let start = frame::begin(out, Kind::Result);
    out.extend_from_slice(&run.job_id.to_le_bytes());
    let failure = match crate::registry::lookup_name(run.name) {
        None => Some(ChunkFailure::Unregistered(run.name.to_owned())),
        Some(entry) => {
            let ran = threads.and_then(|t| (entry.run_chunk_par)(run.args, out, t));
            let ran = ran.unwrap_or_else(|| {
                if threads.is_some() {
                    one_by_one();
                }
                (entry.run_chunk)(run.args, out)
            });
            ran.err().map(ChunkFailure::BadArgs)
        }
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
        crate::wire::serial::encode_into(out, &failure)
            .map_err(|e| crate::error::Error::serialization("a chunk failure", e))?;
        frame::finish(out, start)?;
    }
    Ok(())
}

/// The threads to run a RUN frame's chunk on: the worker's `threads` threads when the frame
/// is flagged parallel and there are more than one; `None` (its items run one by one, as
/// without the flag) otherwise, or if the threads cannot be had.
pub(crate) fn threads_for(flags: u8, threads: usize) -> Option<&'static rayon::ThreadPool> {
    (flags & crate::wire::frame::FLAG_PARALLEL != 0 && threads > 1)
        .then(|| worker_threads(threads).ok())
        .flatten()
}

/// The threads a worker runs parallel chunks on (`threads_per_worker`), made on first use
/// and kept for the worker's life.
fn worker_threads(threads: usize) -> Result<&'static rayon::ThreadPool, String> {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("multiproc-item-{i}"))
        .build()
        .map_err(|e| format!("could not start {threads} threads in the worker: {e}"))?;
    Ok(POOL.get_or_init(|| pool))
}
