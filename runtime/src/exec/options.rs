//! Python's keyword arguments (`chunksize`, `callback`, `error_callback`, `timeout`) as one
//! builder, accepted by every `*_with` method of the pools.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::progress::Progress;
use crate::error::{Error, Result};

type Callback<T> = Box<dyn Fn(&T) + Send + Sync>;

/// What to do with a task that runs too long or loses its worker (`kill_after`, `retries`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub kill_after: Option<Duration>,
    pub retries: Option<u32>,
}

impl Policy {
    /// This call's settings, the pool's defaults where it has none.
    pub(crate) fn or(self, defaults: Policy) -> Policy {
        Policy {
            kill_after: self.kill_after.or(defaults.kill_after),
            retries: self.retries.or(defaults.retries),
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.kill_after == Some(Duration::ZERO) {
            return Err(Error::InvalidArgument(
                "kill_after must be longer than zero".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a policy a pool of threads cannot carry out.
    pub(crate) fn refuse_kill_after(&self) -> Result<()> {
        match self.kill_after {
            Some(_) => Err(Error::InvalidArgument(
                "kill_after needs a process pool: a thread cannot be killed".into(),
            )),
            None => Ok(()),
        }
    }
}
type ErrCallback = Box<dyn Fn(&Error) + Send + Sync>;

pub(crate) struct Callbacks<T> {
    pub on_ok: Option<Callback<T>>,
    pub on_err: Option<ErrCallback>,
}

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            on_ok: None,
            on_err: None,
        }
    }
}

impl<T> Callbacks<T> {
    /// Runs the matching callback; a panic in it is contained (and reported by the panic hook).
    pub(crate) fn run(&self, value: &Result<T>) {
        match value {
            Ok(v) => {
                if let Some(cb) = &self.on_ok {
                    super::result::run_contained(|| cb(v));
                }
            }
            Err(e) => {
                if let Some(cb) = &self.on_err {
                    super::result::run_contained(|| cb(e));
                }
            }
        }
    }
}

/// Options of a pool call: Python's keyword arguments, the same builder on every method.
///
/// `T` is what the call produces: `R` for `apply*`, `Vec<R>` for `map*`/`starmap*`, and the
/// item type `R` for `imap*`. `K` is the kind of call the options are for, and decides which
/// options exist: an option a method cannot honour does not compile (`Opts::new().chunksize(4)`
/// handed to `apply_with` is a type error). You never name `K`: it is inferred from the
/// method the options are handed to.
///
/// | kind | methods | options |
/// |---|---|---|
/// | [`Call`] | `apply_with` | `timeout` |
/// | [`Async`] | `apply_async_with` | `callback`, `error_callback` |
/// | [`Map`] | `map_with`, `starmap_with` | `chunksize`, `timeout` |
/// | [`MapAsync`] | `map_async_with`, `starmap_async_with` | `chunksize`, `callback`, `error_callback` |
/// | [`Iter`] | `imap_with`, `imap_unordered_with` | `chunksize`, `timeout` (per item) |
///
/// ```no_run
/// # use multiproc::prelude::*;
/// # use std::time::Duration;
/// # #[pool_task] fn square(x: u64) -> u64 { x * x }
/// # fn demo(pool: &Pool) -> multiproc::Result<()> {
/// let v = pool.map_with(square, 0..100u64, Opts::new().chunksize(10).timeout(Duration::from_secs(60)))?;
/// let r = pool.map_async_with(square, 0..100u64, Opts::new().callback(|v: &Vec<u64>| println!("{} done", v.len())))?;
/// # Ok(()) }
/// ```
///
/// ```compile_fail
/// # use multiproc::prelude::*;
/// # #[pool_task] fn square(x: u64) -> u64 { x * x }
/// # fn demo(pool: &Pool) -> multiproc::Result<()> {
/// pool.apply_with(square, (3,), Opts::new().chunksize(4))?; // apply takes no chunksize
/// # Ok(()) }
/// ```
pub struct Opts<T, K = Call> {
    pub(crate) chunksize: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) callbacks: Callbacks<T>,
    pub(crate) policy: Policy,
    pub(crate) progress: Progress,
    _kind: PhantomData<fn() -> K>,
}

/// The kinds of call (the `K` of [`Opts`]).
mod kinds {
    /// Options for a blocking single call (`apply_with`): `timeout`. Example: [`Opts`](crate::Opts).
    #[derive(Debug, Clone, Copy)]
    pub struct Call;
    /// Options for an asynchronous single call (`apply_async_with`): callbacks. Example:
    /// [`Opts`](crate::Opts).
    #[derive(Debug, Clone, Copy)]
    pub struct Async;
    /// Options for a blocking map (`map_with`, `starmap_with`): `chunksize`, `timeout`.
    /// Example: [`Opts`](crate::Opts).
    #[derive(Debug, Clone, Copy)]
    pub struct Map;
    /// Options for an asynchronous map (`map_async_with`, `starmap_async_with`):
    /// `chunksize`, callbacks. Example: [`Opts`](crate::Opts).
    #[derive(Debug, Clone, Copy)]
    pub struct MapAsync;
    /// Options for a lazy map (`imap_with`, `imap_unordered_with`): `chunksize`, `timeout`
    /// (per item). Example: [`Opts`](crate::Opts).
    #[derive(Debug, Clone, Copy)]
    pub struct Iter;
}

pub use kinds::{Async, Call, Iter, Map, MapAsync};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Call {}
    impl Sealed for super::Async {}
    impl Sealed for super::Map {}
    impl Sealed for super::MapAsync {}
    impl Sealed for super::Iter {}
}

/// Kinds of call that take a `chunksize`. Example: [`Opts`].
#[diagnostic::on_unimplemented(
    message = "this pool call takes no `chunksize`",
    label = "options given here",
    note = "`Opts::chunksize` is for map, starmap and imap calls"
)]
pub trait TakesChunksize: sealed::Sealed {}
impl TakesChunksize for Map {}
impl TakesChunksize for MapAsync {}
impl TakesChunksize for Iter {}

/// Kinds of call that take a `timeout`. Example: [`Opts`].
#[diagnostic::on_unimplemented(
    message = "this pool call takes no `timeout`",
    label = "options given here",
    note = "`Opts::timeout` is for blocking calls and imap; an async call's AsyncResult has \
            get_timeout and wait_timeout"
)]
pub trait TakesTimeout: sealed::Sealed {}
impl TakesTimeout for Call {}
impl TakesTimeout for Map {}
impl TakesTimeout for Iter {}

/// Kinds of call that take callbacks. Example: [`Opts`].
#[diagnostic::on_unimplemented(
    message = "this pool call takes no callbacks",
    label = "options given here",
    note = "`Opts::callback` and `Opts::error_callback` are for the *_async calls"
)]
pub trait TakesCallbacks: sealed::Sealed {}
impl TakesCallbacks for Async {}
impl TakesCallbacks for MapAsync {}

impl<T, K> Default for Opts<T, K> {
    fn default() -> Self {
        Opts {
            chunksize: None,
            timeout: None,
            callbacks: Callbacks::default(),
            policy: Policy::default(),
            progress: Progress::default(),
            _kind: PhantomData,
        }
    }
}

impl<T, K> fmt::Debug for Opts<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opts")
            .field("chunksize", &self.chunksize)
            .field("timeout", &self.timeout)
            .field("callback", &self.callbacks.on_ok.is_some())
            .field("error_callback", &self.callbacks.on_err.is_some())
            .field("kill_after", &self.policy.kill_after)
            .field("retries", &self.policy.retries)
            .field("progress", &self.progress.is_on())
            .finish()
    }
}

impl<T, K> Opts<T, K> {
    /// No options: the defaults of the method.
    pub fn new() -> Self {
        Self::default()
    }

    /// Kills a task that runs longer than `limit` (with its worker, which is replaced): the
    /// task fails with `Error::TaskTimedOut`, the jobs queued on that worker run elsewhere,
    /// everything else is unaffected. Per task, not per call: each item of a map gets the
    /// limit. Unlike `timeout`, which only stops waiting, this stops the task. A task is
    /// killed once it has run at least `limit`, at most a quarter more. The thread pool
    /// refuses it (a thread cannot be killed). Overrides the pool's default
    /// (`PoolBuilder::kill_after`).
    pub fn kill_after(mut self, limit: Duration) -> Self {
        self.policy.kill_after = Some(limit);
        self
    }

    /// Runs a task again, on another worker, when the worker running it dies (killed, out of
    /// memory, aborted), up to `n` more times; a task that takes down `n + 1` workers fails
    /// with `Error::WorkerLost` carrying that count. Off by default. A task that panics or
    /// times out is never retried. With retries on, a task may run more than once
    /// (at-least-once): make it idempotent. Overrides the pool's default
    /// (`PoolBuilder::retries`).
    pub fn retries(mut self, n: u32) -> Self {
        self.policy.retries = Some(n);
        self
    }

    /// Refuses values out of range (a chunksize of 0, a `kill_after` of zero).
    pub(crate) fn check(&self) -> Result<()> {
        if self.chunksize == Some(0) {
            return Err(Error::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        self.policy.check()
    }

    /// The options a blocking call hands to the non-blocking one it waits on: chunksize and
    /// policy travel, the timeout stays with the waiter.
    pub(crate) fn forward<T2, K2>(&self) -> Opts<T2, K2> {
        Opts {
            chunksize: self.chunksize,
            policy: self.policy,
            progress: self.progress.clone(),
            ..Opts::default()
        }
    }
}

impl<T, K: TakesChunksize> Opts<T, K> {
    /// Items per job (Python's `chunksize`). Must be ≥ 1. Map and starmap calls default to
    /// Python's `ceil(len / (4 × processes))`, on a process pool at most as many items as
    /// fit in a 32 KiB job, judged by the largest encoding among the first, middle and last
    /// items (so each worker has its next chunk queued while it runs one); imap calls
    /// default to 1.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }
}

impl<T, K: TakesChunksize> Opts<T, K> {
    /// Shows a progress bar on stderr while the call runs: items completed across all
    /// workers, out of the total when it is known, with rate and ETA (the `progress`
    /// feature; hidden when stderr is not a terminal).
    #[cfg(feature = "progress")]
    pub fn progress(mut self) -> Self {
        self.progress = Progress::default_bar();
        self
    }

    /// Counts the call's completed items on `bar` (an indicatif `ProgressBar`, styled and
    /// placed as you like: in a `MultiProgress`, hidden, ...). Its length is set to the
    /// call's item count if it has none. The bar is finished when the call completes.
    #[cfg(feature = "progress")]
    pub fn progress_with(mut self, bar: indicatif::ProgressBar) -> Self {
        self.progress = Progress::with(bar);
        self
    }
}

impl<T, K: TakesTimeout> Opts<T, K> {
    /// For blocking calls: give up with `Error::Timeout` after this long. For `imap*`: the
    /// longest one `next()` waits (it yields `Err(Timeout)` and the iteration can go on).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}

impl<T, K: TakesCallbacks> Opts<T, K> {
    /// Called in the parent with the result when the call succeeds (Python's `callback`),
    /// before `get` returns. Keep it short: it runs on the pool's result thread.
    pub fn callback(mut self, f: impl Fn(&T) + Send + Sync + 'static) -> Self {
        self.callbacks.on_ok = Some(Box::new(f));
        self
    }

    /// Called in the parent with the error when the call fails (Python's `error_callback`).
    pub fn error_callback(mut self, f: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.callbacks.on_err = Some(Box::new(f));
        self
    }
}
