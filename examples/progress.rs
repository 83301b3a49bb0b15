//! A long map with a progress bar: items completed across all workers, with rate and ETA,
//! drawn on stderr when it is a terminal (`Opts::progress`, the `progress` feature).

use multiproc::prelude::*;

#[pool_task]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(2));
    x * x
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(4)?;
    let v = pool.map_with(slow_square, 0..400u64, Opts::new().chunksize(4).progress())?;
    assert_eq!(v[399], 399 * 399);
    let n = pool
        .imap_unordered_with(slow_square, 0..200u64, Opts::new().progress())?
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(n, 200);
    println!("squared 600 numbers");
    Ok(())
}
