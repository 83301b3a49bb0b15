//! The Python call family, written once for every pool: each pool supplies three primitives —
//! `apply_async_with`, `starmap_inner` (an async starmap over collected items) and
//! `imap_inner` — and this macro derives the rest with their documented option checks.
//! The bounds on arguments and results are the pool's own (serde for processes, only `Send`
//! for threads).

macro_rules! pool_family {
    (args: [$($ab:tt)+], output: [$($ob:tt)+]) => {
        /// Runs `f(args...)` and waits for the result (Python's `apply`). Arguments go as a
        /// tuple: `pool.apply(add, (1, 2))`, `pool.apply(square, (4,))`.
        pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
        where
            F: TaskFn<Args>,
            Args: $($ab)+,
            F::Output: $($ob)+,
        {
            self.apply_with(f, args, Opts::new())
        }

        /// [`apply`](Self::apply) with options: reads `timeout`, `kill_after`, `retries`.
        pub fn apply_with<F, Args>(&self, f: F, args: Args, opts: Opts<F::Output, $crate::exec::options::Call>) -> Result<F::Output>
        where
            F: TaskFn<Args>,
            Args: $($ab)+,
            F::Output: $($ob)+,
        {
            opts.check()?;
            let timeout = opts.timeout;
            $crate::exec::result::wait(self.apply_async_with(f, args, opts.forward())?, timeout)
        }

        /// Starts `f(args...)` and returns at once (Python's `apply_async`).
        pub fn apply_async<F, Args>(&self, f: F, args: Args) -> Result<AsyncResult<F::Output>>
        where
            F: TaskFn<Args>,
            Args: $($ab)+,
            F::Output: $($ob)+,
        {
            self.apply_async_with(f, args, Opts::new())
        }

        /// Applies `f` to every item, in parallel, returning results in input order (Python's
        /// `map`). The input is collected first, as Python does; chunksize defaults to
        /// `ceil(len / (4 × processes))` (capped on a process pool: see
        /// [`Opts::chunksize`](crate::Opts::chunksize)). The first failing item (in input
        /// order) is the error.
        pub fn map<F, A, I>(&self, f: F, iter: I) -> Result<Vec<F::Output>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+,
            I: IntoIterator<Item = A>,
            F::Output: $($ob)+,
        {
            self.map_with(f, iter, Opts::new())
        }

        /// [`map`](Self::map) with options: reads `chunksize`, `timeout`.
        pub fn map_with<F, A, I>(&self, f: F, iter: I, opts: Opts<Vec<F::Output>, $crate::exec::options::Map>) -> Result<Vec<F::Output>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+,
            I: IntoIterator<Item = A>,
            F::Output: $($ob)+,
        {
            opts.check()?;
            let timeout = opts.timeout;
            let items: Vec<(A,)> = iter.into_iter().map(|a| (a,)).collect();
            $crate::exec::result::wait(self.starmap_inner(f, items, opts)?, timeout)
        }

        /// Non-blocking [`map`](Self::map) (Python's `map_async`).
        pub fn map_async<F, A, I>(&self, f: F, iter: I) -> Result<AsyncResult<Vec<F::Output>>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+,
            I: IntoIterator<Item = A>,
            F::Output: $($ob)+,
        {
            self.map_async_with(f, iter, Opts::new())
        }

        /// [`map_async`](Self::map_async) with options: reads `chunksize`, `callback`,
        /// `error_callback`.
        pub fn map_async_with<F, A, I>(&self, f: F, iter: I, opts: Opts<Vec<F::Output>, $crate::exec::options::MapAsync>) -> Result<AsyncResult<Vec<F::Output>>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+,
            I: IntoIterator<Item = A>,
            F::Output: $($ob)+,
        {
            opts.check()?;
            let items: Vec<(A,)> = iter.into_iter().map(|a| (a,)).collect();
            self.starmap_inner(f, items, opts)
        }

        /// Like [`map`](Self::map), each item being the tuple of arguments (Python's
        /// `starmap`): `pool.starmap(add, vec![(1, 2), (3, 4)])`.
        pub fn starmap<F, Args, I>(&self, f: F, iter: I) -> Result<Vec<F::Output>>
        where
            F: TaskFn<Args>,
            Args: $($ab)+,
            I: IntoIterator<Item = Args>,
            F::Output: $($ob)+,
        {
            self.starmap_with(f, iter, Opts::new())
        }

        /// [`starmap`](Self::starmap) with options: reads `chunksize`, `timeout`.
        pub fn starmap_with<F, Args, I>(&self, f: F, iter: I, opts: Opts<Vec<F::Output>, $crate::exec::options::Map>) -> Result<Vec<F::Output>>
        where
            F: TaskFn<Args>,
            Args: $($ab)+,
            I: IntoIterator<Item = Args>,
            F::Output: $($ob)+,
        {
            opts.check()?;
            let timeout = opts.timeout;
            $crate::exec::result::wait(self.starmap_inner(f, iter.into_iter().collect(), opts)?, timeout)
        }

        /// Non-blocking [`starmap`](Self::starmap) (Python's `starmap_async`).
        pub fn starmap_async<F, Args, I>(&self, f: F, iter: I) -> Result<AsyncResult<Vec<F::Output>>>
        where
            F: TaskFn<Args>,
            Args: $($ab)+,
            I: IntoIterator<Item = Args>,
            F::Output: $($ob)+,
        {
            self.starmap_async_with(f, iter, Opts::new())
        }

        /// [`starmap_async`](Self::starmap_async) with options: reads `chunksize`,
        /// `callback`, `error_callback`.
        pub fn starmap_async_with<F, Args, I>(&self, f: F, iter: I, opts: Opts<Vec<F::Output>, $crate::exec::options::MapAsync>) -> Result<AsyncResult<Vec<F::Output>>>
        where
            F: TaskFn<Args>,
            Args: $($ab)+,
            I: IntoIterator<Item = Args>,
            F::Output: $($ob)+,
        {
            opts.check()?;
            self.starmap_inner(f, iter.into_iter().collect(), opts)
        }

        /// Lazily applies `f` to the items, yielding results in input order (Python's
        /// `imap`). Chunksize defaults to 1. The input is consumed as results are, within a
        /// bounded window, so an endless iterator runs in constant memory.
        pub fn imap<'p, F, A, I>(&'p self, f: F, iter: I) -> Result<Imap<'p, F::Output>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+ + 'p,
            I: IntoIterator<Item = A>,
            I::IntoIter: 'p,
            F::Output: $($ob)+,
        {
            self.imap_with(f, iter, Opts::new())
        }

        /// [`imap`](Self::imap) with options: reads `chunksize` and `timeout` (per item).
        pub fn imap_with<'p, F, A, I>(&'p self, f: F, iter: I, opts: Opts<F::Output, $crate::exec::options::Iter>) -> Result<Imap<'p, F::Output>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+ + 'p,
            I: IntoIterator<Item = A>,
            I::IntoIter: 'p,
            F::Output: $($ob)+,
        {
            opts.check()?;
            self.imap_inner(f, iter, opts, true)
        }

        /// Like [`imap`](Self::imap), yielding results as they complete (Python's
        /// `imap_unordered`).
        pub fn imap_unordered<'p, F, A, I>(&'p self, f: F, iter: I) -> Result<Imap<'p, F::Output>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+ + 'p,
            I: IntoIterator<Item = A>,
            I::IntoIter: 'p,
            F::Output: $($ob)+,
        {
            self.imap_unordered_with(f, iter, Opts::new())
        }

        /// [`imap_unordered`](Self::imap_unordered) with options: reads `chunksize` and
        /// `timeout` (per item).
        pub fn imap_unordered_with<'p, F, A, I>(&'p self, f: F, iter: I, opts: Opts<F::Output, $crate::exec::options::Iter>) -> Result<Imap<'p, F::Output>>
        where
            F: TaskFn<(A,)>,
            A: $($ab)+ + 'p,
            I: IntoIterator<Item = A>,
            I::IntoIter: 'p,
            F::Output: $($ob)+,
        {
            opts.check()?;
            self.imap_inner(f, iter, opts, false)
        }
    };
}

pub(crate) use pool_family;
