//! `starmap` unpacks each tuple into the task's arguments; `starmap_async` does it without
//! blocking, with a callback for the whole list and one for an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use multiproc::prelude::*;

#[pool_task]
fn power(base: u64, exp: u32) -> u64 {
    base.pow(exp)
}

#[pool_task]
fn checked_div(a: i64, b: i64) -> i64 {
    a.checked_div(b).expect("division by zero")
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let v = pool.starmap(power, vec![(2, 10), (3, 4), (10, 3)])?;
    println!("starmap(power, [(2,10), (3,4), (10,3)]) = {v:?}");
    assert_eq!(v, vec![1024, 81, 1000]);

    let failed = Arc::new(AtomicBool::new(false));
    let f = failed.clone();
    let r = pool.starmap_async_with(
        checked_div,
        vec![(10, 2), (1, 0), (9, 3)],
        Opts::new()
            .callback(|v: &Vec<i64>| println!("never: {v:?}"))
            .error_callback(move |e: &Error| {
                println!("error_callback: {e}");
                f.store(true, Ordering::SeqCst);
            }),
    )?;
    let err = r.get().unwrap_err();
    assert!(matches!(err, Error::TaskPanicked { .. }));
    assert!(failed.load(Ordering::SeqCst));
    println!(
        "starmap_async reported the failing pair and the pool carries on: {:?}",
        pool.starmap(power, vec![(5, 2)])?
    );
    Ok(())
}
