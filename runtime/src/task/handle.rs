//! Tasks as values: [`Task`], a typed handle to a `#[pool_task]` that can be stored, compared,
//! sent to other processes and called; [`AnyTask`], the same without its types, for
//! collections of tasks with different signatures; [`TaskCall`], an erased task with its
//! encoded arguments (Python's `(func, args)` pair).
//!
//! Handles cross processes by the task's registered name and signature, never by address:
//! decoding one that names no task of this executable, or a task whose signature differs,
//! is an error that names the task.

use std::any::TypeId;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::registry::{self, Signature, TaskEntry, TaskFn};
use crate::wire::{codec, serial};

/// A typed handle to a `#[pool_task]` taking the argument tuple `Args` and returning `R`.
///
/// `Copy`, comparable and hashable (by task), `Debug` prints the task's name, and it is
/// `Serialize`/`Deserialize` by name, so it can sit in a `Vec`, a struct, a queue item or
/// another task's arguments. Every pool call, [`Process::new`](crate::Process::new),
/// initializers and barrier actions take it wherever they take the function, with the same
/// compile-time check of the arguments; [`call`](Task::call) runs it here.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn mul(a: i64, b: i64) -> i64 { a * b }
/// #[pool_task]
/// fn plus(a: i64, b: i64) -> i64 { a + b }
///
/// #[pool_task]
/// fn calculate(func: Task<(i64, i64), i64>, args: (i64, i64)) -> String {
///     format!("{}{:?} = {}", func.short_name(), args, func.call(args))
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let tasks: Vec<(Task<(i64, i64), i64>, (i64, i64))> = (0..3)
///         .map(|i| (Task::of(mul), (i, 7)))
///         .chain((0..3).map(|i| (Task::of(plus), (i, 8))))
///         .collect();
///     let pool = Pool::new(2)?;
///     let lines = pool.starmap(calculate, tasks.clone())?;
///     assert_eq!(lines[1], "mul(1, 7) = 7");
///     assert_eq!(lines[5], "plus(2, 8) = 10");
///     // A handle is accepted wherever the function is.
///     assert_eq!(pool.apply(tasks[0].0, (6, 7))?, 42);
///     Ok(())
/// }
/// ```
pub struct Task<Args, R> {
    entry: &'static TaskEntry,
    _sig: PhantomData<fn(Args) -> R>,
}

impl<Args: 'static, R: 'static> Task<Args, R> {
    /// The handle of `f`, a `#[pool_task]` function.
    ///
    /// # Panics
    /// If `f` does not carry `#[pool_task]` (or two tasks share its name): a mistake in the
    /// program, found the first time this line runs. [`try_of`](Task::try_of) returns it as
    /// an error instead.
    pub fn of<F: TaskFn<Args, Output = R>>(f: F) -> Task<Args, R> {
        match Task::try_of(f) {
            Ok(t) => t,
            Err(e) => panic!("Task::of: {e}"),
        }
    }

    /// The handle of `f`, or [`Error::UnregisteredTask`] if it does not carry `#[pool_task]`.
    pub fn try_of<F: TaskFn<Args, Output = R>>(f: F) -> Result<Task<Args, R>> {
        let entry = f.__entry()?;
        // A function's entry was built from its own signature; a handle's is checked.
        AnyTask { entry }.typed()
    }

    /// The task's registered name (`module::path::function`).
    pub fn name(&self) -> &'static str {
        self.entry.name
    }

    /// The function's own name, without its module path (Python's `__name__`).
    pub fn short_name(&self) -> &'static str {
        short(self.entry.name)
    }

    /// Runs the task in this process and thread, as calling the function would.
    pub fn call(&self, args: Args) -> R {
        let mut slot: (Option<Args>, Option<R>) = (Some(args), None);
        (self.entry.call_here)(&mut slot);
        match slot.1 {
            Some(r) => r,
            // The entry's signature was checked when the handle was made.
            None => unreachable!(
                "task `{}` did not take {}",
                self.entry.name,
                std::any::type_name::<Args>()
            ),
        }
    }

    /// The same handle without its types.
    pub fn erase(self) -> AnyTask {
        AnyTask { entry: self.entry }
    }
}

fn short(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

impl<Args, R> Clone for Task<Args, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Args, R> Copy for Task<Args, R> {}

impl<Args, R> fmt::Debug for Task<Args, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task({})", self.entry.name)
    }
}

impl<Args, R> PartialEq for Task<Args, R> {
    fn eq(&self, other: &Self) -> bool {
        self.entry.name == other.entry.name
    }
}
impl<Args, R> Eq for Task<Args, R> {}
impl<Args, R> Hash for Task<Args, R> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.entry.name.hash(h);
    }
}

impl<Args: 'static, R: 'static> TaskFn<Args> for Task<Args, R> {
    type Output = R;
    fn call(&self, args: Args) -> R {
        Task::call(self, args)
    }
    fn __entry(&self) -> Result<&'static TaskEntry> {
        Ok(self.entry)
    }
}

/// How a handle travels: the task's name and the signature the sender knew it by.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    name: &'a str,
    args: &'a str,
    output: &'a str,
}

fn serialize_entry<S: Serializer>(entry: &TaskEntry, s: S) -> std::result::Result<S::Ok, S::Error> {
    let sig = (entry.signature)();
    Wire {
        name: entry.name,
        args: sig.args_name,
        output: sig.output_name,
    }
    .serialize(s)
}

/// The entry a received handle names: registered here, with the signature its sender knew.
fn deserialize_entry<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<&'static TaskEntry, D::Error> {
    #[derive(Deserialize)]
    struct Owned {
        name: String,
        args: String,
        output: String,
    }
    let w = Owned::deserialize(d)?;
    let entry = registry::lookup_name(&w.name).ok_or_else(|| {
        D::Error::custom(format!(
            "a task handle names `{}`, which is not a #[pool_task] of this executable",
            w.name
        ))
    })?;
    let sig = (entry.signature)();
    if sig.args_name != w.args || sig.output_name != w.output {
        return Err(D::Error::custom(format!(
            "a task handle for `{}` was made for {} -> {}, but here that task is {sig}",
            w.name, w.args, w.output
        )));
    }
    Ok(entry)
}

impl<Args, R> Serialize for Task<Args, R> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_entry(self.entry, s)
    }
}

impl<'de, Args: 'static, R: 'static> Deserialize<'de> for Task<Args, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let entry = deserialize_entry(d)?;
        AnyTask { entry }
            .typed()
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// A handle to any `#[pool_task]`, its signature known only at run time: for collections of
/// tasks of different signatures. [`typed`](AnyTask::typed) gets the [`Task`] back (an
/// error, not a guess, if the types differ), [`TaskCall`] pairs one with its arguments.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn mul(a: i64, b: i64) -> i64 { a * b }
/// #[pool_task]
/// fn greet(name: String) -> String { format!("hello {name}") }
///
/// # fn main() -> multiproc::Result<()> {
/// let tasks = [Task::of(mul).erase(), Task::of(greet).erase()];
/// assert_eq!(tasks[1].short_name(), "greet");
/// let greet_again: Task<(String,), String> = tasks[1].typed()?;
/// assert_eq!(greet_again.call(("you".into(),)), "hello you");
/// assert!(tasks[0].typed::<(String,), String>().is_err()); // mul takes (i64, i64)
/// # Ok(()) }
/// ```
#[derive(Clone, Copy)]
pub struct AnyTask {
    entry: &'static TaskEntry,
}

impl AnyTask {
    /// The task's registered name (`module::path::function`).
    pub fn name(&self) -> &'static str {
        self.entry.name
    }

    /// The function's own name, without its module path.
    pub fn short_name(&self) -> &'static str {
        short(self.entry.name)
    }

    /// The task's signature, as `(argument tuple type, output type)` names.
    pub fn signature(&self) -> (&'static str, &'static str) {
        let sig = (self.entry.signature)();
        (sig.args_name, sig.output_name)
    }

    /// Whether the task takes `Args` and returns `R`.
    pub fn is<Args: 'static, R: 'static>(&self) -> bool {
        self.takes::<Args>().is_ok() && self.returns::<R>().is_ok()
    }

    /// `Ok` if the task takes `Args`, else the error saying what it takes.
    fn takes<Args: 'static>(&self) -> Result<()> {
        let sig = (self.entry.signature)();
        self.expect(
            "takes",
            sig.args == TypeId::of::<Args>(),
            sig.args_name,
            std::any::type_name::<Args>(),
        )
    }

    /// `Ok` if the task returns `R`, else the error saying what it returns.
    fn returns<R: 'static>(&self) -> Result<()> {
        let sig = (self.entry.signature)();
        self.expect(
            "returns",
            sig.output == TypeId::of::<R>(),
            sig.output_name,
            std::any::type_name::<R>(),
        )
    }

    fn expect(&self, verb: &str, same: bool, have: &str, want: &str) -> Result<()> {
        if same {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "task `{}` {verb} {have}, not {want}",
            self.entry.name
        )))
    }

    /// The typed handle, or [`Error::InvalidArgument`] naming both signatures if the task
    /// does not take `Args` and return `R`.
    pub fn typed<Args: 'static, R: 'static>(self) -> Result<Task<Args, R>> {
        let sig = Signature::of::<Args, R>();
        self.expect(
            "is",
            self.is::<Args, R>(),
            &(self.entry.signature)().to_string(),
            &sig.to_string(),
        )?;
        Ok(Task {
            entry: self.entry,
            _sig: PhantomData,
        })
    }
}

impl<Args, R> From<Task<Args, R>> for AnyTask {
    fn from(t: Task<Args, R>) -> AnyTask {
        AnyTask { entry: t.entry }
    }
}

impl fmt::Debug for AnyTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AnyTask({}: {})",
            self.entry.name,
            (self.entry.signature)()
        )
    }
}

impl PartialEq for AnyTask {
    fn eq(&self, other: &Self) -> bool {
        self.entry.name == other.entry.name
    }
}
impl Eq for AnyTask {}
impl Hash for AnyTask {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.entry.name.hash(h);
    }
}

impl Serialize for AnyTask {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_entry(self.entry, s)
    }
}

impl<'de> Deserialize<'de> for AnyTask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(AnyTask {
            entry: deserialize_entry(d)?,
        })
    }
}

/// A task and its arguments, encoded: Python's `(func, args)` pair, for queues and lists of
/// work whose tasks differ in signature. It is plain data (handles to queues, locks or shared
/// memory cannot ride inside one: pass those as a task's own arguments), `Clone`,
/// `Serialize`/`Deserialize`; [`run`](TaskCall::run) calls it in the current process.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn mul(a: i64, b: i64) -> i64 { a * b }
/// #[pool_task]
/// fn negate(a: i64) -> i64 { -a }
///
/// #[pool_task]
/// fn worker(q: Queue<Option<TaskCall>>, done: Queue<i64>) {
///     while let Ok(Some(call)) = q.get() {
///         done.put(&call.run::<i64>().unwrap_or(i64::MIN)).unwrap();
///     }
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let (jobs, done) = (Queue::new()?, Queue::new()?);
///     jobs.put(&Some(TaskCall::new(Task::of(mul), (6, 7))?))?;
///     jobs.put(&Some(TaskCall::new(Task::of(negate), (5,))?))?;
///     jobs.put(&None)?; // the stop marker
///     let p = Process::spawn(worker, (jobs.clone(), done.clone()))?;
///     assert_eq!((done.get()?, done.get()?), (42, -5));
///     assert!(p.join()?.success());
///     Ok(())
/// }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct TaskCall {
    task: AnyTask,
    #[serde(with = "serde_bytes")]
    args: Vec<u8>,
}

impl TaskCall {
    /// `task` with `args`, encoded now: an argument that does not serialize fails here.
    pub fn new<Args: Serialize + 'static, R: 'static>(
        task: Task<Args, R>,
        args: Args,
    ) -> Result<TaskCall> {
        let args = serial::encode(&args)
            .map_err(|e| Error::serialization(format!("the arguments of `{}`", task.name()), e))?;
        Ok(TaskCall {
            task: task.erase(),
            args,
        })
    }

    /// The task this calls.
    pub fn task(&self) -> AnyTask {
        self.task
    }

    /// The arguments, decoded as `Args` ([`Error::InvalidArgument`] if the task takes
    /// something else).
    pub fn args<Args: DeserializeOwned + 'static>(&self) -> Result<Args> {
        self.task.takes::<Args>()?;
        serial::decode(&self.args).map_err(|e| {
            Error::serialization(format!("the arguments of `{}`", self.task.name()), e)
        })
    }

    /// Runs the task here with its arguments, its result read as `R`: a panic is
    /// [`Error::TaskPanicked`], a task returning something else than `R` is
    /// [`Error::InvalidArgument`] (checked before it runs).
    pub fn run<R: DeserializeOwned + 'static>(&self) -> Result<R> {
        self.task.returns::<R>()?;
        let entry = self.task.entry;
        // The dispatcher takes a sequence of argument tuples: this one, alone.
        let mut input = Vec::with_capacity(serial::SEQ_LEN_BYTES + self.args.len());
        serial::push_seq_len(&mut input, 1);
        input.extend_from_slice(&self.args);
        let mut out = Vec::new();
        (entry.run_chunk)(&input, &mut out)
            .map_err(|m| Error::serialization(format!("the arguments of `{}`", entry.name), m))?;
        match codec::decode_outcomes::<R>(entry.name, &out, 1)?.pop() {
            Some(r) => r,
            None => Err(Error::Protocol(format!(
                "task `{}` gave no outcome",
                entry.name
            ))),
        }
    }
}

impl fmt::Debug for TaskCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TaskCall({}, {} argument bytes)",
            self.task.name(),
            self.args.len()
        )
    }
}
