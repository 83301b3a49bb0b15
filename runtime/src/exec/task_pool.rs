//! [`TaskPool`]: what the process pool and the thread pool both offer, so code can be written
//! once and run on either (and, later, on other backends such as a cluster).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{AsyncResult, Imap, Opts};
use crate::error::Result;
use crate::registry::TaskFn;

/// The Pool API shared by [`Pool`](crate::Pool) (processes) and
/// [`dummy::Pool`](crate::dummy::Pool) (threads).
///
/// Its bounds are those of the strictest backend: tasks are `#[pool_task]`s whose arguments
/// and results serialize. Each pool's inherent methods of the same names are what run; the
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
#[allow(missing_docs)] // each method is documented on the pools
pub trait TaskPool {
    fn processes(&self) -> usize;

    fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static;

    fn apply_with<F, Args>(&self, f: F, args: Args, opts: Opts<F::Output>) -> Result<F::Output>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static;

    fn apply_async<F, Args>(&self, f: F, args: Args) -> Result<AsyncResult<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static;

    fn apply_async_with<F, Args>(
        &self,
        f: F,
        args: Args,
        opts: Opts<F::Output>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        F::Output: DeserializeOwned + Send + 'static;

    fn map<F, A, I>(&self, f: F, iter: I) -> Result<Vec<F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static;

    fn map_with<F, A, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>>,
    ) -> Result<Vec<F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static;

    fn map_async<F, A, I>(&self, f: F, iter: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static;

    fn map_async_with<F, A, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        F::Output: DeserializeOwned + Send + 'static;

    fn starmap<F, Args, I>(&self, f: F, iter: I) -> Result<Vec<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static;

    fn starmap_with<F, Args, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>>,
    ) -> Result<Vec<F::Output>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static;

    fn starmap_async<F, Args, I>(&self, f: F, iter: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static;

    fn starmap_async_with<F, Args, I>(
        &self,
        f: F,
        iter: I,
        opts: Opts<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: TaskFn<Args>,
        Args: Serialize + Send + 'static,
        I: IntoIterator<Item = Args>,
        F::Output: DeserializeOwned + Send + 'static;

    fn imap<'p, F, A, I>(&'p self, f: F, iter: I) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static;

    fn imap_with<'p, F, A, I>(
        &'p self,
        f: F,
        iter: I,
        opts: Opts<F::Output>,
    ) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static;

    fn imap_unordered<'p, F, A, I>(&'p self, f: F, iter: I) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static;

    fn imap_unordered_with<'p, F, A, I>(
        &'p self,
        f: F,
        iter: I,
        opts: Opts<F::Output>,
    ) -> Result<Imap<'p, F::Output>>
    where
        F: TaskFn<(A,)>,
        A: Serialize + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'p,
        F::Output: DeserializeOwned + Send + 'static;

    fn close(&self);
    fn terminate(&self);
    fn join(&self) -> Result<()>;
}

/// Implements [`TaskPool`] for a pool type by calling its inherent methods of the same names.
macro_rules! delegate_task_pool {
    ($pool:ty) => {
        impl $crate::exec::task_pool::TaskPool for $pool {
            fn processes(&self) -> usize {
                <$pool>::processes(self)
            }
            fn apply<F: $crate::registry::TaskFn<Args>, Args: ::serde::Serialize + Send + 'static>(
                &self,
                f: F,
                args: Args,
            ) -> $crate::error::Result<F::Output>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::apply(self, f, args)
            }
            fn apply_with<
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
            >(
                &self,
                f: F,
                args: Args,
                opts: $crate::exec::Opts<F::Output>,
            ) -> $crate::error::Result<F::Output>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::apply_with(self, f, args, opts)
            }
            fn apply_async<
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
            >(
                &self,
                f: F,
                args: Args,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<F::Output>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::apply_async(self, f, args)
            }
            fn apply_async_with<
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
            >(
                &self,
                f: F,
                args: Args,
                opts: $crate::exec::Opts<F::Output>,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<F::Output>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::apply_async_with(self, f, args, opts)
            }
            fn map<
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &self,
                f: F,
                iter: I,
            ) -> $crate::error::Result<Vec<F::Output>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::map(self, f, iter)
            }
            fn map_with<
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<Vec<F::Output>>,
            ) -> $crate::error::Result<Vec<F::Output>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::map_with(self, f, iter, opts)
            }
            fn map_async<
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &self,
                f: F,
                iter: I,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<Vec<F::Output>>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::map_async(self, f, iter)
            }
            fn map_async_with<
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<Vec<F::Output>>,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<Vec<F::Output>>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::map_async_with(self, f, iter, opts)
            }
            fn starmap<
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = Args>,
            >(
                &self,
                f: F,
                iter: I,
            ) -> $crate::error::Result<Vec<F::Output>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::starmap(self, f, iter)
            }
            fn starmap_with<
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = Args>,
            >(
                &self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<Vec<F::Output>>,
            ) -> $crate::error::Result<Vec<F::Output>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::starmap_with(self, f, iter, opts)
            }
            fn starmap_async<
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = Args>,
            >(
                &self,
                f: F,
                iter: I,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<Vec<F::Output>>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::starmap_async(self, f, iter)
            }
            fn starmap_async_with<
                F: $crate::registry::TaskFn<Args>,
                Args: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = Args>,
            >(
                &self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<Vec<F::Output>>,
            ) -> $crate::error::Result<$crate::exec::AsyncResult<Vec<F::Output>>>
            where
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::starmap_async_with(self, f, iter, opts)
            }
            fn imap<
                'p,
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &'p self,
                f: F,
                iter: I,
            ) -> $crate::error::Result<$crate::exec::Imap<'p, F::Output>>
            where
                I::IntoIter: 'p,
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::imap(self, f, iter)
            }
            fn imap_with<
                'p,
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &'p self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<F::Output>,
            ) -> $crate::error::Result<$crate::exec::Imap<'p, F::Output>>
            where
                I::IntoIter: 'p,
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::imap_with(self, f, iter, opts)
            }
            fn imap_unordered<
                'p,
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &'p self,
                f: F,
                iter: I,
            ) -> $crate::error::Result<$crate::exec::Imap<'p, F::Output>>
            where
                I::IntoIter: 'p,
                F::Output: ::serde::de::DeserializeOwned + Send + 'static,
            {
                <$pool>::imap_unordered(self, f, iter)
            }
            fn imap_unordered_with<
                'p,
                F: $crate::registry::TaskFn<(A,)>,
                A: ::serde::Serialize + Send + 'static,
                I: IntoIterator<Item = A>,
            >(
                &'p self,
                f: F,
                iter: I,
                opts: $crate::exec::Opts<F::Output>,
            ) -> $crate::error::Result<$crate::exec::Imap<'p, F::Output>>
            where
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

pub(crate) use delegate_task_pool;
