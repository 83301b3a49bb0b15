//! The classic program from Python's multiprocessing docs (`mp_workers.py`), ported line for
//! line: worker processes take `(func, args)` pairs from a task queue until they meet STOP,
//! and report on a done queue. The pairs carry task handles (`Task`), as Python's carry
//! functions.
//!
//! `cargo run --release --example task_queue`

use multiproc::prelude::*;

const NUMBER_OF_PROCESSES: usize = 4;

/// `(func, args)`, or `None` for Python's 'STOP'.
type Job = Option<(Task<(i64, i64), i64>, (i64, i64))>;

/// `for func, args in iter(input.get, 'STOP')`.
#[pool_task]
fn worker(input: Queue<Job>, output: Queue<String>) {
    while let Some((func, args)) = input.get().expect("task queue") {
        output.put(&calculate(func, args)).expect("done queue");
    }
}

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

#[pool_task]
fn mul(a: i64, b: i64) -> i64 {
    a * b
}

#[pool_task]
fn plus(a: i64, b: i64) -> i64 {
    a + b
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let tasks1: Vec<Job> = (0..20).map(|i| Some((Task::of(mul), (i, 7)))).collect();
    let tasks2: Vec<Job> = (0..10).map(|i| Some((Task::of(plus), (i, 8)))).collect();
    let task_queue = Queue::new()?;
    let done_queue = Queue::new()?;
    for task in &tasks1 {
        task_queue.put(task)?;
    }
    let workers: Vec<Process> = (0..NUMBER_OF_PROCESSES)
        .map(|_| Process::spawn(worker, (task_queue.clone(), done_queue.clone())))
        .collect::<multiproc::Result<_>>()?;

    let mut seen = Vec::new();
    println!("Unordered results:");
    for _ in 0..tasks1.len() {
        let line: String = done_queue.get()?;
        println!("\t{line}");
        seen.push(line);
    }
    for task in &tasks2 {
        task_queue.put(task)?;
    }
    for _ in 0..tasks2.len() {
        let line: String = done_queue.get()?;
        println!("\t{line}");
        seen.push(line);
    }
    for _ in 0..NUMBER_OF_PROCESSES {
        task_queue.put(&None)?;
    }
    for w in &workers {
        assert!(w.join()?.success());
    }

    // Every task was computed exactly once, correctly, by one of the workers.
    let mut got: Vec<String> = seen
        .iter()
        .map(|l| {
            l.split_once(" says that ")
                .expect("a result line")
                .1
                .to_owned()
        })
        .collect();
    let mut expect: Vec<String> = tasks1
        .iter()
        .chain(&tasks2)
        .flatten()
        .map(|(f, a)| format!("{}{:?} = {}", f.short_name(), a, f.call(*a)))
        .collect();
    got.sort();
    expect.sort();
    assert_eq!(got, expect);
    assert!(seen.iter().all(|l| l.starts_with("Process-")));
    println!("all {} results checked", seen.len());
    Ok(())
}
