//! The classic program from Python's multiprocessing docs, ported: worker processes take
//! tasks from a task queue until they meet STOP, and report on a done queue.
//!
//! `cargo run --release --example task_queue`

use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

const NUMBER_OF_PROCESSES: usize = 4;

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
enum Task {
    Mul(i64, i64),
    Plus(i64, i64),
    Stop,
}

impl Task {
    fn calculate(self) -> Option<(String, i64)> {
        let (desc, r) = match self {
            Task::Mul(a, b) => (format!("mul({a}, {b})"), a * b),
            Task::Plus(a, b) => (format!("plus({a}, {b})"), a + b),
            Task::Stop => return None,
        };
        Some((desc, r))
    }
}

/// Worker body: `for task in iter(input.get, 'STOP')`.
#[pool_task]
fn worker(input: Queue<Task>, output: Queue<(String, String, i64)>) {
    let me = multiproc::current_process().name;
    while let Some((desc, r)) = input.get().expect("task queue").calculate() {
        output.put(&(me.clone(), desc, r)).expect("done queue");
    }
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let tasks1: Vec<Task> = (0..20).map(|i| Task::Mul(i, 7)).collect();
    let tasks2: Vec<Task> = (0..10).map(|i| Task::Plus(i, 8)).collect();
    let task_queue = Queue::new()?;
    let done_queue = Queue::new()?;
    for t in &tasks1 {
        task_queue.put(t)?;
    }
    let workers: Vec<Process> = (0..NUMBER_OF_PROCESSES)
        .map(|_| Process::spawn(worker, (task_queue.clone(), done_queue.clone())))
        .collect::<multiproc::Result<_>>()?;

    println!("Unordered results:");
    let mut seen = Vec::new();
    for _ in 0..tasks1.len() {
        let (who, desc, r) = done_queue.get()?;
        println!("\t{who} says that {desc} = {r}");
        seen.push((desc, r));
    }
    for t in &tasks2 {
        task_queue.put(t)?;
    }
    for _ in 0..tasks2.len() {
        let (who, desc, r) = done_queue.get()?;
        println!("\t{who} says that {desc} = {r}");
        seen.push((desc, r));
    }
    for _ in 0..NUMBER_OF_PROCESSES {
        task_queue.put(&Task::Stop)?;
    }
    for w in &workers {
        assert!(w.join()?.success());
    }

    // Every task was computed exactly once, correctly.
    let mut expect: Vec<(String, i64)> = tasks1
        .iter()
        .chain(&tasks2)
        .filter_map(|t| t.calculate())
        .collect();
    expect.sort();
    seen.sort();
    assert_eq!(seen, expect);
    println!("all {} results checked", seen.len());
    Ok(())
}
