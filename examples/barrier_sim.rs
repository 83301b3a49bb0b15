//! A barrier-synchronised simulation: heat diffusion along a rod, split between processes.
//! Each step, every process updates its own cells from the previous step's values, then all
//! wait at the barrier before the next step reads them. The result matches a one-process run
//! exactly.
//!
//! `cargo run --release --example barrier_sim`

use multiproc::prelude::*;
use multiproc::{Barrier, RawArray};

const CELLS: usize = 240;
const STEPS: usize = 500;
const PARTS: usize = 3;

fn step(cur: &dyn Fn(usize) -> f64, i: usize) -> f64 {
    if i == 0 || i == CELLS - 1 {
        return cur(i); // fixed-temperature ends
    }
    cur(i) + 0.25 * (cur(i - 1) - 2.0 * cur(i) + cur(i + 1))
}

#[pool_task]
fn simulate(a: RawArray<f64>, b: RawArray<f64>, barrier: Barrier, part: usize) {
    let per = CELLS / PARTS;
    let mine = part * per..(part + 1) * per;
    for s in 0..STEPS {
        let (cur, next) = if s.is_multiple_of(2) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let read = |i: usize| cur.get(i).expect("in range");
        for i in mine.clone() {
            next.set(i, step(&read, i)).expect("in range");
        }
        // Nobody starts step s+1 before every cell of step s is written.
        barrier.wait().expect("barrier");
    }
}

fn initial() -> Vec<f64> {
    (0..CELLS)
        .map(|i| if i < CELLS / 2 { 100.0 } else { 0.0 })
        .collect()
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let a = RawArray::new(CELLS, 0.0f64)?;
    let b = RawArray::new(CELLS, 0.0f64)?;
    for (i, v) in initial().into_iter().enumerate() {
        a.set(i, v)?;
    }
    let barrier = Barrier::new(PARTS as u32)?;
    let ps: Vec<Process> = (0..PARTS)
        .map(|p| Process::spawn(simulate, (a.clone(), b.clone(), barrier.clone(), p)))
        .collect::<multiproc::Result<_>>()?;
    for p in &ps {
        assert!(p.join()?.success());
    }
    let result = if STEPS.is_multiple_of(2) {
        a.to_vec()
    } else {
        b.to_vec()
    };

    // The same simulation in one process.
    let mut cur = initial();
    for _ in 0..STEPS {
        let prev = cur.clone();
        cur = (0..CELLS).map(|i| step(&|j| prev[j], i)).collect();
    }
    assert_eq!(result, cur);
    println!(
        "{STEPS} steps on {PARTS} processes; temperature at the middle: {:.3}",
        result[CELLS / 2]
    );
    Ok(())
}
