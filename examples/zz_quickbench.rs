use multiproc::prelude::*;
use std::time::Instant;
#[pool_task]
fn sq(x: u64) -> u64 {
    x * x
}
#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    for _ in 0..3 {
        let n = 5000;
        let t = Instant::now();
        for i in 0..n {
            pool.apply(sq, (i,))?;
        }
        println!(
            "apply round trip: {:.1} us",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        let t = Instant::now();
        let v = pool.map_with(sq, 0..100_000u64, Opts::new().chunksize(1))?;
        println!(
            "map cs1: {:.2} us/item",
            t.elapsed().as_secs_f64() * 1e6 / v.len() as f64
        );
        let t = Instant::now();
        let v = pool.map(sq, 0..100_000u64)?;
        println!(
            "map default: {:.3} us/item",
            t.elapsed().as_secs_f64() * 1e6 / v.len() as f64
        );
        let t = Instant::now();
        let c = pool
            .imap_with(sq, 0..100_000u64, Opts::new().chunksize(1))?
            .count();
        println!(
            "imap cs1: {:.2} us/item",
            t.elapsed().as_secs_f64() * 1e6 / c as f64
        );
        let t = Instant::now();
        let c = pool
            .imap_with(sq, 0..100_000u64, Opts::new().chunksize(100))?
            .count();
        println!(
            "imap cs100: {:.3} us/item",
            t.elapsed().as_secs_f64() * 1e6 / c as f64
        );
    }
    Ok(())
}
