//! `map` blocks for the whole list; `map_async` returns an `AsyncResult` at once.

use std::time::Duration;

use multiproc::prelude::*;

#[pool_task]
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let steps = pool.map(collatz_steps, 1..=10_000u64)?;
    let (best, n) = steps
        .iter()
        .zip(1u64..)
        .max()
        .map(|(s, n)| (*s, n))
        .unwrap_or_default();
    println!("map: the longest Collatz chain below 10,000 starts at {n} ({best} steps)");
    assert_eq!((n, best), (6171, 261));

    let pending = pool.map_async_with(collatz_steps, 1..=1000u64, Opts::new().chunksize(50))?;
    println!("map_async submitted; ready yet? {}", pending.ready());
    assert!(pending.wait_timeout(Duration::from_secs(120)));
    let steps = pending.get()?;
    println!(
        "map_async: {} results, 27 takes {} steps",
        steps.len(),
        steps[26]
    );
    assert_eq!(steps[26], 111);
    Ok(())
}
