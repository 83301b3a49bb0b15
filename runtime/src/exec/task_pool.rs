//! [`TaskPool`]: what the process pool and the thread pool both offer, so code can be written
//! once and run on either, and what a new backend (a cluster) implements to offer it too.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::options::{Async, Call, Iter, Map, MapAsync};
use super::{AsyncResult, Imap, Opts};
use crate::error::Result;
use crate::registry::TaskFn;

/// The Pool API shared by [`Pool`](crate::Pool) (processes) and
/// [`dummy::Pool`](crate::dummy::Pool) (threads), and the way to add a backend.
///
/// A backend implements eight methods: the primitives [`apply_async_with`],
/// [`starmap_async_with`], [`imap_with`] and [`imap_unordered_with`], plus
/// [`processes`], [`close`], [`terminate`] and [`join`]. Every other method of Python's
/// family is provided here, once, on top of them (as rayon's `ParallelIterator` provides its
/// adaptors over `drive_unindexed`).
///
/// Its bounds are those of the strictest backend: tasks are `#[pool_task]`s whose arguments
/// and results serialize. The pools' inherent methods of the same names behave the same; the
/// thread pool's accept more (closures, unserializable values) when called directly.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn square(x: u64) -> u64 { x * x }
///
/// fn sum_of_squares(pool: &impl TaskPool, n: u64) -> multiproc::Result<u64> {
///     Ok(pool.map(square, 0..n)?.into_iter().sum())
/// }
///
/// # #[multiproc::main]
/// # fn main() -> multiproc::Result<()> {
/// assert_eq!(sum_of_squares(&Pool::new(2)?, 10)?, 285);
/// assert_eq!(sum_of_squares(&multiproc::dummy::Pool::new(2)?, 10)?, 285);
/// # Ok(()) }
/// ```
///
/// [`apply_async_with`]: TaskPool::apply_async_with
/// [`starmap_async_with`]: TaskPool::starmap_async_with
/// [`imap_with`]: TaskPool::imap_with
/// [`imap_unordered_with`]: TaskPool::imap_unordered_with
/// [`processes`]: TaskPool::processes
/// [`close`]: TaskPool::close
/// [`terminate`]: TaskPool::terminate
/// [`join`]: TaskPool::join
pub trait TaskPool {
    // --- what a backend implements -----------------------------------------------------

    /// Number of workers (processes, threads, ranks).
    fn processes(&self) -> usize;

    /// Starts `f(args...)` and returns at once (Python's `apply_async`), with callbacks.
    fn apply_async_with<F, Args>(
        &self,
        f: F,
        args: Args,
        opts: Opts<F::Output, Async>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static;

    /// Applies `f` to every tuple of arguments, in parallel, without waiting (Python's
    /// `starmap_async`): chunksize (default `ceil(len / (4 × processes))`) and callbacks.
    fn starmap_async_with<F, Args, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>, MapAsync>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static;

    /// Lazily applies `f` to the items, yielding results in input order (Python's `imap`),
    /// within a bounded window; chunksize (default 1) and a per-item timeout.
    fn imap_with<'p, F, A, I>(
        &'p self,
        f: F,
        iter: I,
        opts: Opts<F::Output, Iter>,
    ) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static;

    /// Like [`imap_with`](TaskPool::imap_with), yielding results as they complete (Python's
    /// `imap_unordered`).
    fn imap_unordered_with<'p, F, A, I>(
        &'p self,
        f: F,
        iter: I,
        opts: Opts<F::Output, Iter>,
    ) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static;

    /// Stops accepting work; submitted work still completes (Python's `close`).
    fn close(&self);

    /// Stops the workers now; pending calls fail with `Error::PoolTerminated`.
    fn terminate(&self);

    /// Waits for submitted work and the workers (after `close` or `terminate`).
    fn join(&self) -> Result<()>;

    // --- provided: the rest of Python's family ------------------------------------------

    /// Runs `f(args...)` and waits for the result (Python's `apply`).
    fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.apply_with(f, args, Opts::new())
    }

    /// [`apply`](TaskPool::apply) with a timeout.
    fn apply_with<F, Args>(
        &self,
        f: F,
        args: Args,
        opts: Opts<F::Output, Call>,
    ) -> Result<F::Output>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static,
    {
        opts.check()?;
        super::result::wait(
            self.apply_async_with(f, args, opts.forward())?,
            opts.timeout,
        )
    }

    /// Starts `f(args...)` and returns at once (Python's `apply_async`).
    fn apply_async<F, Args>(&self, f: F, args: Args) -> Result<AsyncResult<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args, Opts::new())
    }

    /// Applies `f` to every item, in parallel, in input order (Python's `map`).
    fn map<F, A, I>(&self, f: F, iter: I) -> Result<Vec<F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.map_with(f, iter, Opts::new())
    }

    /// [`map`](TaskPool::map) with chunksize and timeout.
    fn map_with<F, A, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>, Map>,
    ) -> Result<Vec<F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.starmap_with(f, iter.into_iter().map(|a| (a,)), opts)
    }

    /// Non-blocking [`map`](TaskPool::map) (Python's `map_async`).
    fn map_async<F, A, I>(&self, f: F, iter: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.map_async_with(f, iter, Opts::new())
    }

    /// [`map_async`](TaskPool::map_async) with chunksize and callbacks.
    fn map_async_with<F, A, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>, MapAsync>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.starmap_async_with(f, iter.into_iter().map(|a| (a,)), opts)
    }

    /// Like [`map`](TaskPool::map), each item being the tuple of arguments (Python's
    /// `starmap`).
    fn starmap<F, Args, I>(&self, f: F, iter: I) -> Result<Vec<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.starmap_with(f, iter, Opts::new())
    }

    /// [`starmap`](TaskPool::starmap) with chunksize and timeout.
    fn starmap_with<F, Args, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>, Map>,
    ) -> Result<Vec<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static,
    {
        opts.check()?;
        super::result::wait(
            self.starmap_async_with(f, iter, opts.forward())?,
            opts.timeout,
        )
    }

    /// Non-blocking [`starmap`](TaskPool::starmap) (Python's `starmap_async`).
    fn starmap_async<F, Args, I>(&self, f: F, iter: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.starmap_async_with(f, iter, Opts::new())
    }

    /// Lazily applies `f` to the items, in input order (Python's `imap`).
    fn imap<'p, F, A, I>(&'p self, f: F, iter: I) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.imap_with(f, iter, Opts::new())
    }

    /// Lazily applies `f` to the items, in completion order (Python's `imap_unordered`).
    fn imap_unordered<'p, F, A, I>(&'p self, f: F, iter: I) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static,
    {
        self.imap_unordered_with(f, iter, Opts::new())
    }
}

/// Implements [`TaskPool`] for a pool type whose inherent Python family (`exec::family`)
/// has the same primitives.
macro_rules! task_pool_by_primitives {
    ($pool:ty) => {
        impl $crate::exec::task_pool::TaskPool for $pool {
            fn processes(&self) -> usize {
                <$pool>::processes(self)
            }
            fn apply_async_with<F, Args>(
                &self,
                f: F,
                args: Args,
                opts: $crate::exec::Opts<F::Output, $crate::exec::options::Async>,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<F::Output>>
            where
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::apply_async_with(self, f, args, opts)
            }
            fn starmap_async_with<F, Args, I>(
                &self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<Vec<F::Output>, $crate::exec::options::MapAsync>,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<Vec<F::Output>>>
            where
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = Args>,
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::starmap_async_with(self, f, iter, opts)
            }
            fn imap_with<'p, F, A, I>(
                &'p self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<F::Output, $crate::exec::options::Iter>,
            ) -> $crate::error::Result<$crate::exec::Imap<'p, F::Output>>
            where
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
                I::IntoIter: 'p,
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::imap_with(self, f, iter, opts)
            }
            fn imap_unordered_with<'p, F, A, I>(
                &'p self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<F::Output, $crate::exec::options::Iter>,
            ) -> $crate::error::Result<$crate::exec::Imap<'p, F::Output>>
            where
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
                I::IntoIter: 'p,
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::imap_unordered_with(self, f, iter, opts)
            }
            fn close(&self) {
                <$pool>::close(self)
            }
            fn terminate(&self) {
                <$pool>::terminate(self)
            }
            fn join(&self) -> $crate::error::Result<()> {
                <$pool>::join(self)
            }
        }
    };
}

pub(crate) use task_pool_by_primitives;
