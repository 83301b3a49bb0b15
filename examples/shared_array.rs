//! Pool workers each fill their own slice of one shared `Array`: no copying of results, the
//! parent reads the array when the map returns.
//!
//! `cargo run --release --example shared_array`

use multiproc::prelude::*;
use multiproc::{Array, RawArray};

const N: usize = 1 << 16;
const SLICES: usize = 8;

/// Writes sqrt(i) for i in the slice, without taking the lock: slices do not overlap.
#[pool_task]
fn fill(out: RawArray<f64>, slice: usize) -> usize {
    let per = N / SLICES;
    for i in slice * per..(slice + 1) * per {
        out.set(i, (i as f64).sqrt()).expect("in range");
    }
    per
}

/// Adds the slice's sum into a locked total.
#[pool_task]
fn sum_slice(data: RawArray<f64>, totals: Array<f64>, slice: usize) {
    let per = N / SLICES;
    let s: f64 = (slice * per..(slice + 1) * per)
        .map(|i| data.get(i).expect("in range"))
        .sum();
    totals.lock().expect("lock")[slice] = s;
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let data = RawArray::new(N, 0.0f64)?;
    let totals = Array::new(SLICES, 0.0f64)?;
    let pool = Pool::new(4)?;
    let written: Vec<usize> = pool.starmap(fill, (0..SLICES).map(|s| (data.clone(), s)))?;
    assert_eq!(written.iter().sum::<usize>(), N);
    pool.starmap(
        sum_slice,
        (0..SLICES).map(|s| (data.clone(), totals.clone(), s)),
    )?;

    let v = data.to_vec();
    assert!(v.iter().enumerate().all(|(i, &x)| x == (i as f64).sqrt()));
    let total: f64 = totals.to_vec()?.iter().sum();
    let expect: f64 = (0..N).map(|i| (i as f64).sqrt()).sum();
    assert!((total - expect).abs() < 1e-6 * expect);
    println!("{N} elements written by {SLICES} tasks; sum of square roots = {total:.3}");
    Ok(())
}
