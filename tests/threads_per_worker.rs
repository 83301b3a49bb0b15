//! `threads_per_worker`: each worker spreads a chunk's items over its own threads, through
//! real worker processes — results in order, a panic its item's own, a poison item the only
//! one blamed, `kill_after` still per item.

use std::time::Duration;

use multiproc::prelude::*;
use multiproc::{Error, Result};

const LONG: Duration = Duration::from_secs(120);

/// Waits at a barrier the whole chunk shares: it can only pass if `parties` items of the
/// chunk run at the same time.
#[pool_task]
fn meet(b: Barrier, i: u32) -> (u32, u32) {
    b.wait_timeout(LONG)
        .expect("the chunk's items did not run at once");
    (std::process::id(), i)
}

#[pool_task]
fn square_or_panic(x: u64) -> u64 {
    if x == 5 {
        panic!("item {x} refuses");
    }
    x * x
}

#[pool_task]
fn square_or_abort(x: u64) -> u64 {
    if x == 5 {
        std::process::abort();
    }
    x * x
}

#[pool_task]
fn square_or_hang(x: u64) -> u64 {
    if x == 2 {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    x * x
}

#[multiproc::test]
fn a_chunks_items_run_at_once_inside_one_worker() {
    let pool = Pool::builder()
        .processes(1)
        .threads_per_worker(4)
        .build()
        .unwrap();
    let b = Barrier::new(4).unwrap();
    let items: Vec<(Barrier, u32)> = (0..4).map(|i| (b.clone(), i)).collect();
    let out = pool
        .starmap_with(meet, items, Opts::new().chunksize(4))
        .unwrap();
    let worker = out[0].0;
    assert_ne!(worker, std::process::id());
    assert!(out.iter().all(|&(pid, _)| pid == worker), "{out:?}");
    assert_eq!(
        out.iter().map(|&(_, i)| i).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

#[multiproc::test]
fn results_keep_input_order_and_a_panic_is_its_items_error() {
    let pool = Pool::builder()
        .processes(2)
        .threads_per_worker(4)
        .build()
        .unwrap();
    let got: Vec<Result<u64>> = pool
        .imap_with(square_or_panic, 0..40u64, Opts::new().chunksize(8))
        .unwrap()
        .collect();
    assert_eq!(got.len(), 40);
    for (x, r) in got.into_iter().enumerate() {
        match (x, r) {
            (5, Err(Error::TaskPanicked { message, .. })) => {
                assert!(message.contains("item 5 refuses"), "{message}")
            }
            (x, Ok(v)) if x != 5 => assert_eq!(v, (x * x) as u64),
            (x, other) => panic!("item {x}: {other:?}"),
        }
    }
    // The pool is whole: a map over the same task at the default chunk size works.
    let v = pool.map(square_or_panic, 6..10u64).unwrap();
    assert_eq!(v, [36, 49, 64, 81]);
}

#[multiproc::test]
fn a_poison_item_in_a_parallel_chunk_is_the_only_one_blamed() {
    let pool = Pool::builder()
        .processes(2)
        .threads_per_worker(4)
        .build()
        .unwrap();
    let got: Vec<Result<u64>> = pool
        .imap_with(square_or_abort, 0..24u64, Opts::new().chunksize(8))
        .unwrap()
        .collect();
    assert_eq!(got.len(), 24);
    for (x, r) in got.into_iter().enumerate() {
        match (x, r) {
            (5, Err(Error::WorkerLost { .. })) => {}
            (x, Ok(v)) if x != 5 => assert_eq!(v, (x * x) as u64),
            (x, other) => panic!("item {x}: {other:?}"),
        }
    }
    assert_eq!(pool.map(square_or_abort, 0..4u64).unwrap(), [0, 1, 4, 9]);
}

#[multiproc::test]
fn kill_after_still_times_each_item() {
    let pool = Pool::builder()
        .processes(2)
        .threads_per_worker(4)
        .build()
        .unwrap();
    let opts = Opts::new()
        .chunksize(4)
        .kill_after(Duration::from_millis(300));
    let got: Vec<Result<u64>> = pool
        .imap_with(square_or_hang, 0..8u64, opts)
        .unwrap()
        .collect();
    for (x, r) in got.into_iter().enumerate() {
        match (x, r) {
            (2, Err(Error::TaskTimedOut { .. })) => {}
            (x, Ok(v)) if x != 2 => assert_eq!(v, (x * x) as u64),
            (x, other) => panic!("item {x}: {other:?}"),
        }
    }
}

#[multiproc::test]
fn zero_threads_is_refused() {
    match Pool::builder().processes(1).threads_per_worker(0).build() {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("threads_per_worker"), "{m}"),
        other => panic!("{other:?}"),
    }
}
