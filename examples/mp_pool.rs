//! The `calculate(func, args)` part of Python's docs' `mp_pool.py`, ported: a list of
//! `(func, args)` pairs (`TASKS`), each sent to a pool with `apply_async`, `imap` and
//! `imap_unordered`, the task handle travelling as an argument. A mixed list with tasks of
//! other signatures uses the erased form, `TaskCall`.
//!
//! `cargo run --release --example mp_pool`

use multiproc::prelude::*;

const PROCESSES: usize = 4;

type Pair = (Task<(i64, i64), i64>, (i64, i64));

#[pool_task]
fn calculate(func: Task<(i64, i64), i64>, args: (i64, i64)) -> String {
    let result = func.call(args);
    format!(
        "{} says that {}{:?} = {}",
        multiproc::current_process().name,
        func.short_name(),
        args,
        result
    )
}

/// `calculatestar(args)`: `calculate(*args)`.
#[pool_task]
fn calculatestar(pair: Pair) -> String {
    calculate(pair.0, pair.1)
}

#[pool_task]
fn mul(a: i64, b: i64) -> i64 {
    a * b
}

#[pool_task]
fn plus(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
fn shout(word: String) -> String {
    word.to_uppercase()
}

/// Runs any `TaskCall` whose task returns a `String` or an `i64`, and says what it got.
#[pool_task]
fn describe(call: TaskCall) -> String {
    let task = call.task();
    let value = if task.is::<(String,), String>() {
        call.run::<String>().map(|s| format!("{s:?}"))
    } else {
        call.run::<i64>().map(|n| n.to_string())
    };
    match value {
        Ok(v) => format!("{} -> {v}", task.short_name()),
        Err(e) => format!("{} failed: {e}", task.short_name()),
    }
}

fn strip_worker(line: &str) -> &str {
    line.split_once(" says that ")
        .map_or(line, |(_, rest)| rest)
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    println!("Creating pool with {PROCESSES} processes\n");
    let pool = Pool::new(PROCESSES)?;

    let tasks: Vec<Pair> = (0..10)
        .map(|i| (Task::of(mul), (i, 7)))
        .chain((0..10).map(|i| (Task::of(plus), (i, 8))))
        .collect();
    let expect: Vec<String> = tasks
        .iter()
        .map(|(f, a)| format!("{}{:?} = {}", f.short_name(), a, f.call(*a)))
        .collect();

    let results: Vec<AsyncResult<String>> = tasks
        .iter()
        .map(|&(f, args)| pool.apply_async(calculate, (f, args)))
        .collect::<multiproc::Result<_>>()?;
    println!("Ordered results using pool.apply_async():");
    let mut got = Vec::new();
    for r in results {
        let line = r.get()?;
        println!("\t{line}");
        got.push(strip_worker(&line).to_owned());
    }
    assert_eq!(got, expect);

    println!("\nOrdered results using pool.imap():");
    let mut got = Vec::new();
    for line in pool.imap(calculatestar, tasks.clone())? {
        let line = line?;
        println!("\t{line}");
        got.push(strip_worker(&line).to_owned());
    }
    assert_eq!(got, expect);

    println!("\nUnordered results using pool.imap_unordered():");
    let mut got = Vec::new();
    for line in pool.imap_unordered(calculatestar, tasks.clone())? {
        let line = line?;
        println!("\t{line}");
        got.push(strip_worker(&line).to_owned());
    }
    got.sort();
    let mut sorted = expect.clone();
    sorted.sort();
    assert_eq!(got, sorted);

    println!("\nOrdered results using pool.map() --- will block till complete:");
    let lines = pool.starmap(calculate, tasks.clone())?;
    for line in &lines {
        println!("\t{line}");
    }
    assert_eq!(
        lines.iter().map(|l| strip_worker(l)).collect::<Vec<_>>(),
        expect
    );

    println!("\nTasks of different signatures, erased (TaskCall):");
    let mixed = vec![
        TaskCall::new(Task::of(mul), (6, 7))?,
        TaskCall::new(Task::of(shout), ("hello".to_string(),))?,
        TaskCall::new(Task::of(plus), (40, 2))?,
    ];
    let lines = pool.map(describe, mixed)?;
    for line in &lines {
        println!("\t{line}");
    }
    assert_eq!(lines, ["mul -> 42", "shout -> \"HELLO\"", "plus -> 42"]);
    Ok(())
}
