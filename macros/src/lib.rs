//! Procedural macros for [`multiproc`](https://docs.rs/multiproc). Use them through the
//! `multiproc` crate, which re-exports them; this crate is an implementation detail.

mod args;
mod defaults;
mod entry;
mod errors;
mod expand;
mod managed;
mod parse;
mod shareable;

use proc_macro::TokenStream;

/// Turns a free function into a task that can run in a worker process.
///
/// ```ignore
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// assert_eq!(add(1, 2), 3);                 // still an ordinary function
/// // pool.apply(add, (1, 2))?               // ...and a task the pools accept
/// ```
///
/// Requirements, checked at compile time with an error on the offending token:
/// no generics, no `self`, every argument owned (no references, lifetimes or `impl Trait`),
/// every argument and the return type `serde::Serialize + serde::de::DeserializeOwned`,
/// not `async`, not `unsafe`, not `extern`.
///
/// # What it expands to
///
/// The function is emitted unchanged (only this attribute is removed), followed by one hidden
/// `const _: () = { ... };` block that:
/// - asserts, spanned at each argument and at the return type, that the type can cross a
///   process boundary;
/// - adds a `TaskEntry` to the link-time task table (`linkme` distributed slice, no code runs
///   before `main`), holding the stable name `module_path!()::fn_name`, the function's `TypeId`
///   (how a pool finds the entry when handed the function value) and a monomorphised
///   dispatcher that decodes a chunk of argument tuples, calls the function on each under
///   `catch_unwind`, and encodes the outcomes; and, for task handles (`multiproc::Task`),
///   the argument tuple's and output's types and a direct in-process call.
///
/// # Keyword arguments with defaults
///
/// `#[default(expr)]` on parameters gives the task Python's keyword form beside its
/// positional one, in a module of the same name:
///
/// ```ignore
/// #[pool_task]
/// fn f(name: String, #[default(1)] times: u32) -> String { name.repeat(times as usize) }
///
/// pool.apply(f, ("ab".into(), 3))?;                 // positional, unchanged
/// pool.apply(f::kw, f::args("ab".into()))?;         // times = 1
/// pool.apply(f::kw, f::args("ab".into()).times(3))?;
/// Process::spawn(f::kw, f::Args { times: 2, ..f::args("x".into()) })?;
/// ```
///
/// `f::Args` is a serializable struct with a public field per parameter, `f::args` takes the
/// parameters without defaults and fills in the rest (each default is evaluated there, in
/// the caller's process), and `f::kw` is a registered task taking an `f::Args`, accepted
/// wherever a task is. A default of the wrong type is a type error at the expression;
/// defaults need every parameter to have a plain name. `examples/kwargs.rs` ports Python's
/// `Process(target=f, args=(a,), kwargs={...})`.
///
/// # Options
///
/// `#[pool_task(crate = "path::to::multiproc")]` names the runtime crate when it was renamed
/// in `Cargo.toml` or re-exported by another crate.
#[proc_macro_attribute]
pub fn pool_task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::pool_task(args.into(), item.into()).into()
}

/// Marks `main` as the entry point of a program that starts worker processes.
///
/// Expands to the same function with `::multiproc::init();` inserted as its first statement.
/// In the parent, `init` only records that the program is ready to start workers; in a
/// process started as a worker it runs the worker loop and exits, so the rest of `main`
/// never runs there. Takes the same `crate = "..."` option as `#[pool_task]`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::main(args.into(), item.into()).into()
}

/// Like `#[test]`, for tests that start worker processes.
///
/// Expands to a `#[test]` function whose first statement registers the test's name, so that
/// worker processes can re-execute the test binary selecting this very test, and enters the
/// worker loop when the process was started as a worker. Takes the same `crate = "..."` option.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::test(args.into(), item.into()).into()
}

/// `#[derive(Shareable)]`: lets a `#[repr(C)]` struct whose fields are all `Shareable`
/// (integers, floats, bool, arrays, other Shareable structs) live in a `Value` or `Array`.
/// Missing `#[repr(C)]`, enums, and fields such as references, `Box`, `String` or `char`
/// are compile errors.
#[proc_macro_derive(Shareable, attributes(shareable))]
pub fn derive_shareable(input: TokenStream) -> TokenStream {
    shareable::derive(input.into()).into()
}

/// Lets a manager serve a type: on an inherent `impl` block of a serde type, it exposes the
/// methods taking `&self` or `&mut self` through a generated proxy, `{Type}Proxy`, whose
/// methods have the same names and arguments and return `multiproc::Result<R>`.
///
/// ```ignore
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Maths { calls: u64 }
///
/// #[managed]
/// impl Maths {
///     fn add(&mut self, x: i64, y: i64) -> i64 { self.calls += 1; x + y }
/// }
///
/// let maths = manager.serve::<Maths>()?;   // a MathsProxy, usable from any process
/// assert_eq!(maths.add(4, 3)?, 7);
/// ```
///
/// Requirements, checked at compile time: an inherent, non-generic `impl`; exposed methods
/// not generic, not `async`, taking `&self`/`&mut self` (not `self`), every argument and
/// return type owned (no references, lifetimes, `impl Trait`) and serializable. Functions
/// without a receiver stay as they are, unexposed. One `#[managed]` block per type (a second
/// is a conflicting-implementation error); other plain `impl` blocks are fine.
///
/// # What it expands to
///
/// The `impl` block unchanged, then a `pub struct {Type}Proxy` (serializable: it can be
/// sent to other processes and stored in other managed objects) with one method per exposed
/// method, and a hidden block implementing `multiproc::Managed` (its stable name
/// `module_path!()::Type`), the server-side dispatcher (decodes the arguments, checks the
/// caller's signature tag, calls the method, encodes its result) and an entry in the
/// link-time table of managed types, where the manager's process finds the type by name.
/// Takes the same `crate = "..."` option as `#[pool_task]`.
#[proc_macro_attribute]
pub fn managed(args: TokenStream, item: TokenStream) -> TokenStream {
    managed::expand(args.into(), item.into()).into()
}
