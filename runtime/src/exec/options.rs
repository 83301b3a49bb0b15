//! Python's keyword arguments (`chunksize`, `callback`, `error_callback`, `timeout`) as one
//! builder, accepted by every `*_with` method of the pools.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

type Callback<T> = Box<dyn Fn(&T) + Send + Sync>;
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
    pub(crate) fn is_empty(&self) -> bool {
        self.on_ok.is_none() && self.on_err.is_none()
    }

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

/// Options of a pool call: Python's keyword arguments, the same on every method.
///
/// `T` is what the call produces: `R` for `apply*`, `Vec<R>` for `map*`/`starmap*`, and the
/// item type `R` for `imap*`. Each method documents which options it reads; an option it
/// cannot honour is an `InvalidArgument` error, never silently ignored.
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
pub struct Opts<T> {
    pub(crate) chunksize: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) callbacks: Callbacks<T>,
}

impl<T> Default for Opts<T> {
    fn default() -> Self {
        Opts {
            chunksize: None,
            timeout: None,
            callbacks: Callbacks::default(),
        }
    }
}

impl<T> fmt::Debug for Opts<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opts")
            .field("chunksize", &self.chunksize)
            .field("timeout", &self.timeout)
            .field("callback", &self.callbacks.on_ok.is_some())
            .field("error_callback", &self.callbacks.on_err.is_some())
            .finish()
    }
}

impl<T> Opts<T> {
    /// No options: the defaults of the method.
    pub fn new() -> Self {
        Self::default()
    }

    /// Items per job for `map`/`starmap`/`imap` calls (Python's `chunksize`). Must be ≥ 1.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// For blocking calls: give up with `Error::Timeout` after this long. For `imap*`: the
    /// longest one `next()` waits (it yields `Err(Timeout)` and the iteration can go on).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

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

    pub(crate) fn check(
        &self,
        method: &str,
        chunks: bool,
        callbacks: bool,
        timeout: bool,
    ) -> Result<()> {
        if self.chunksize == Some(0) {
            return Err(Error::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        let refuse = |option, hint| {
            Err(Error::RefusedOption {
                method: method.to_owned(),
                option,
                hint,
            })
        };
        if !chunks && self.chunksize.is_some() {
            return refuse("chunksize", "");
        }
        if !callbacks && !self.callbacks.is_empty() {
            return refuse("callbacks", " (use the *_async variant)");
        }
        if !timeout && self.timeout.is_some() {
            return refuse("timeout", " (use AsyncResult::get_timeout)");
        }
        Ok(())
    }
}
