//! `apply` blocks for one result; `apply_async` returns at once, and a callback sees each
//! result in the parent as it arrives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::prelude::*;

#[pool_task]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x * x
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;

    let v = pool.apply(slow_square, (7,))?;
    println!("apply(slow_square, (7,)) = {v}");
    assert_eq!(v, 49);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let results: Vec<AsyncResult<u64>> = (0..8)
        .map(|x| {
            let seen = seen.clone();
            pool.apply_async_with(
                slow_square,
                (x,),
                Opts::new().callback(move |v: &u64| seen.lock().unwrap().push(*v)),
            )
        })
        .collect::<Result<_, _>>()?;
    println!("8 apply_async calls submitted without waiting");
    let values: Vec<u64> = results
        .into_iter()
        .map(AsyncResult::get)
        .collect::<Result<_, _>>()?;
    println!("results: {values:?}");
    assert_eq!(values, (0..8).map(|x| x * x).collect::<Vec<_>>());
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    println!("the callback saw all of them: {seen:?}");
    assert_eq!(seen, values);
    Ok(())
}
