//! Python's keyword arguments with defaults, ported:
//!
//! ```python
//! def f(name, greeting="hello", times=1): ...
//! Process(target=f, args=("ann",), kwargs={"times": 2}).start()
//! pool.apply_async(f, args=("bob",), kwds={"greeting": "hi"})
//! ```
//!
//! A `#[default(..)]` on a parameter gives the task a keyword form beside its positional one:
//! `f::args(required...)` fills in the defaults, a setter per defaulted parameter changes
//! one, and `f::kw` is the task that takes them.
//!
//! `cargo run --release --example kwargs`

use multiproc::prelude::*;

#[pool_task]
fn f(
    name: String,
    #[default("hello".to_string())] greeting: String,
    #[default(1)] times: u32,
    out: Option<Queue<String>>,
) -> String {
    let line = vec![format!("{greeting}, {name}"); times as usize].join(" / ");
    if let Some(q) = out {
        q.put(&line).expect("queue");
    }
    line
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;

    // Positional, every argument: as before.
    let all = pool.apply(f, ("cy".to_string(), "hey".to_string(), 1, None))?;
    assert_eq!(all, "hey, cy");

    // pool.apply_async(f, args=("bob",), kwds={"greeting": "hi"})
    let r = pool.apply_async(f::kw, f::args("bob".into(), None).greeting("hi".into()))?;
    let hi = r.get()?;
    assert_eq!(hi, "hi, bob");

    // Only the required arguments: every default applies.
    assert_eq!(
        pool.apply(f::kw, f::args("dee".into(), None))?,
        "hello, dee"
    );

    // Process(target=f, args=("ann",), kwargs={"times": 2})
    let q = Queue::new()?;
    let p = Process::spawn(f::kw, f::args("ann".into(), Some(q.clone())).times(2))?;
    assert_eq!(q.get()?, "hello, ann / hello, ann");
    assert!(p.join()?.success());

    // Struct update works too; a list of keyword arguments goes to starmap (each item is
    // all of one call's arguments, as a tuple is for a positional task).
    let many = pool.starmap(
        f::kw,
        ["eve", "fay"].map(|n| f::Args {
            times: 2,
            ..f::args(n.into(), None)
        }),
    )?;
    assert_eq!(many, ["hello, eve / hello, eve", "hello, fay / hello, fay"]);
    println!("{all}\n{hi}\n{}", many.join("\n"));
    Ok(())
}
