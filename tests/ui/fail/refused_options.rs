// An option a method cannot honour does not compile.
use multiproc::prelude::*;
use std::time::Duration;

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    let pool = Pool::new(1).unwrap();
    let _ = pool.apply_with(square, (1,), Opts::new().chunksize(2));
    let _ = pool.apply_with(square, (1,), Opts::new().callback(|_| {}));
    let _ = pool.apply_async_with(square, (1,), Opts::new().timeout(Duration::ZERO));
    let _ = pool.imap_with(square, 0..3u64, Opts::new().callback(|_| {}));
    let _ = pool.map_async_with(square, 0..3u64, Opts::new().timeout(Duration::ZERO));
    let threads = multiproc::dummy::Pool::new(1).unwrap();
    let _ = threads.apply_with(square, (1,), Opts::new().chunksize(2));
}
