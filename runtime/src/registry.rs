//! The task table: every `#[pool_task]` adds one [`TaskEntry`] to a link-time slice, so the
//! parent (which holds a function value) and the worker (which holds a name) can both find it
//! without any code running before `main`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Runs one chunk of calls: decodes argument tuples from `input`, appends encoded outcomes to
/// `out`. An `Err` means the whole chunk could not be decoded.
pub(crate) type RunChunk = fn(input: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String>;
pub(crate) type RunChunkPar = fn(
    input: &[u8],
    out: &mut Vec<u8>,
    threads: &rayon::ThreadPool,
) -> Option<std::result::Result<(), String>>;

/// One registered task. Built by `#[pool_task]`; not meant to be written by hand.
#[doc(hidden)]
#[derive(Debug)]
pub struct TaskEntry {
    /// Stable name: `module_path!()::fn_name`.
    pub name: &'static str,
    /// `TypeId` of the function item, how a pool recognises the function it is handed.
    pub type_id: fn() -> TypeId,
    /// Monomorphised dispatcher.
    pub run_chunk: RunChunk,
    /// The same on a pool of threads (`threads_per_worker`); `None` when the task's
    /// arguments are not `Send` (its items then run one by one).
    pub run_chunk_par: RunChunkPar,
    /// The argument tuple's and the output's types, for typed handles ([`crate::Task`]).
    pub signature: fn() -> Signature,
    /// Calls the function in this process: the argument is a `&mut (Option<Args>,
    /// Option<Output>)` (anything else is left alone), its arguments taken, its output set.
    pub call_here: fn(&mut dyn Any),
}

/// What a task takes and returns: `TypeId`s to check a handle in this executable, names to
/// say what did not match (and to compare handles that crossed from another build).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub args: TypeId,
    pub output: TypeId,
    pub args_name: &'static str,
    pub output_name: &'static str,
}

impl Signature {
    /// The signature of tasks taking `Args` and returning `R`.
    pub(crate) fn of<Args: 'static, R: 'static>() -> Signature {
        Signature {
            args: TypeId::of::<Args>(),
            output: TypeId::of::<R>(),
            args_name: std::any::type_name::<Args>(),
            output_name: std::any::type_name::<R>(),
        }
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.args_name, self.output_name)
    }
}

#[doc(hidden)]
#[linkme::distributed_slice]
pub static TASKS: [TaskEntry];

struct Index {
    by_type: HashMap<TypeId, &'static TaskEntry>,
    by_name: HashMap<&'static str, &'static TaskEntry>,
    duplicates: Vec<&'static str>,
    build_id: u64,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by_type = HashMap::new();
        let mut by_name = HashMap::new();
        let mut duplicates = Vec::new();
        for entry in TASKS.iter() {
            by_type.insert((entry.type_id)(), entry);
            if by_name.insert(entry.name, entry).is_some() {
                duplicates.push(entry.name);
            }
        }
        let mut names: Vec<&str> = by_name.keys().copied().collect();
        names.sort_unstable();
        // FNV-1a over the protocol version, the codec, the crate version and the task names:
        // two processes with the same id run the same build's task table and wire format.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h ^= 0xff;
        };
        feed(&crate::wire::PROTOCOL_VERSION.to_le_bytes());
        feed(crate::wire::serial::CODEC_ID.as_bytes());
        feed(env!("CARGO_PKG_VERSION").as_bytes());
        for n in names {
            feed(n.as_bytes());
        }
        Index {
            by_type,
            by_name,
            duplicates,
            build_id: h,
        }
    })
}

/// Finds the entry for the function value of type `F`.
pub(crate) fn lookup_fn<F: 'static>() -> Result<&'static TaskEntry> {
    let idx = index();
    match idx.by_type.get(&TypeId::of::<F>()) {
        Some(e) if idx.duplicates.contains(&e.name) => Err(Error::DuplicateTask {
            name: e.name.to_owned(),
        }),
        Some(e) => Ok(e),
        None => Err(Error::UnregisteredTask {
            name: std::any::type_name::<F>().to_owned(),
        }),
    }
}

/// Finds the entry for a task name received from the parent.
pub(crate) fn lookup_name(name: &str) -> Option<&'static TaskEntry> {
    index().by_name.get(name).copied()
}

/// Identifies this build's task table; compared during the handshake.
pub(crate) fn build_id() -> u64 {
    index().build_id
}

/// A function a pool can call with the argument tuple `Args`.
///
/// Implemented for every `Fn(A, B, ...) -> R` of up to 12 arguments, and for task handles
/// ([`Task`](crate::Task)). Only functions carrying `#[pool_task]` (and their handles) can be
/// sent to a process pool (checked when the call is made); the thread pool,
/// [`dummy::Pool`](crate::dummy::Pool), takes closures too.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// /// Any pool (processes or threads) and any two-argument task.
/// fn sum_pairs<P: TaskPool, F: TaskFn<(i64, i64), Output = i64>>(
///     pool: &P,
///     f: F,
/// ) -> multiproc::Result<Vec<i64>> {
///     pool.starmap(f, vec![(1, 2), (3, 4)])
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     assert_eq!(sum_pairs(&Pool::new(2)?, add)?, [3, 7]);
///     assert_eq!(sum_pairs(&multiproc::dummy::Pool::new(2)?, |a: i64, b: i64| a * b)?, [2, 12]);
///     Ok(())
/// }
/// ```
pub trait TaskFn<Args>: Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the unpacked tuple.
    fn call(&self, args: Args) -> Self::Output;

    /// The registered task this is (for a function, found by its type). Not public API.
    #[doc(hidden)]
    fn __entry(&self) -> Result<&'static TaskEntry>
    where
        Self: Sized,
    {
        lookup_fn::<Self>()
    }
}

macro_rules! impl_task_fn {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg),*> TaskFn<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            #[inline]
            fn call(&self, ($($arg,)*): ($($arg,)*)) -> Ret {
                (self)($($arg),*)
            }
        }
    };
}
impl_task_fn!();
impl_task_fn!(A1);
impl_task_fn!(A1, A2);
impl_task_fn!(A1, A2, A3);
impl_task_fn!(A1, A2, A3, A4);
impl_task_fn!(A1, A2, A3, A4, A5);
impl_task_fn!(A1, A2, A3, A4, A5, A6);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
impl_task_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

/// A type that can be a task argument: it crosses the process boundary by serde.
///
/// Anything serde derives works (structs, tuples, enums, `Option`, collections, `String`),
/// encoded in bincode 1's compact binary layout. Three things do not cross: `u128`/`i128`
/// (the codec refuses them with an error saying so: send `[u64; 2]` or `[u8; 16]`), serde
/// attributes that need a self-describing format (`#[serde(untagged)]`, `#[serde(tag =
/// "...")]`, `#[serde(flatten)]`; decoding them fails with an error), and borrowed data
/// (`&str`: use `String`). Mark byte buffers `#[serde(with = "serde_bytes")]` (or use
/// `serde_bytes::ByteBuf`) to copy them whole rather than byte by byte. A `Serialize` impl
/// that fails with `Error::custom("...")` fails the call with that message.
///
/// ```no_run
/// use multiproc::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Job { id: u64, #[serde(with = "serde_bytes")] payload: Vec<u8> }
///
/// #[pool_task]
/// fn size(job: Job) -> (u64, usize) { (job.id, job.payload.len()) }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     let job = Job { id: 7, payload: vec![0; 1 << 20] };
///     assert_eq!(pool.apply(size, (job,))?, (7, 1 << 20));
///     Ok(())
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to a worker process",
    label = "task arguments must implement serde's `Serialize` and `Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait TaskArg {}
impl<T: Serialize + DeserializeOwned> TaskArg for T {}

/// A type that can be a task's return value: the same as a [`TaskArg`] (see its example).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a worker process",
    label = "task return values must implement serde's `Serialize` and `Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait TaskOutput {}
impl<T: Serialize + DeserializeOwned> TaskOutput for T {}

#[doc(hidden)]
pub fn assert_task_arg<T: TaskArg>() {}
#[doc(hidden)]
pub fn assert_task_output<T: TaskOutput>() {}
#[doc(hidden)]
pub fn type_id_of<T: 'static>(_: &T) -> TypeId {
    TypeId::of::<T>()
}
#[doc(hidden)]
pub fn signature_of<Args: 'static, F: TaskFn<Args>>(_: &F) -> Signature
where
    F::Output: 'static,
{
    Signature::of::<Args, F::Output>()
}
#[doc(hidden)]
pub fn call_here<Args: 'static, F: TaskFn<Args>>(slot: &mut dyn Any, f: F)
where
    F::Output: 'static,
{
    if let Some((args, out)) = slot.downcast_mut::<(Option<Args>, Option<F::Output>)>() {
        if let Some(a) = args.take() {
            *out = Some(f.call(a));
        }
    }
}
