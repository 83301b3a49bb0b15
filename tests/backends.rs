//! One behavioural suite, run against both backends through the `TaskPool` trait: the process
//! pool and the thread pool (`dummy`) must agree wherever their semantics are shared.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::prelude::*;

const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

#[pool_task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
fn odd_panics(x: u32) -> u32 {
    if !x.is_multiple_of(2) {
        panic!("odd input {x}");
    }
    x
}

#[pool_task]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn calls(pool: &impl TaskPool) {
    assert_eq!(pool.apply(add, (40, 2)).unwrap(), 42);
    let r = pool.apply_async(square, (7,)).unwrap();
    assert!(r.wait_timeout(LONG));
    assert!(r.successful().unwrap());
    assert_eq!(r.get().unwrap(), 49);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let r = pool
        .apply_async_with(
            add,
            (1, 2),
            Opts::new().callback(move |v: &i64| s.lock().unwrap().push(*v)),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 3);
    assert_eq!(*seen.lock().unwrap(), vec![3]);
}

fn maps(pool: &impl TaskPool) {
    let want: Vec<u64> = (0..500u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..500u64).unwrap(), want);
    for cs in [1, 7, 1000] {
        assert_eq!(
            pool.map_with(square, 0..500u64, Opts::new().chunksize(cs))
                .unwrap(),
            want
        );
    }
    assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let r = pool
        .map_async_with(
            square,
            0..50u64,
            Opts::new().callback(move |v: &Vec<u64>| d.store(v.len(), Ordering::SeqCst)),
        )
        .unwrap();
    assert_eq!(r.get().unwrap().len(), 50);
    assert_eq!(done.load(Ordering::SeqCst), 50);
    let pairs: Vec<(i64, i64)> = (0..30).map(|i| (i, i)).collect();
    let want: Vec<i64> = (0..30).map(|i| 2 * i).collect();
    assert_eq!(pool.starmap(add, pairs.clone()).unwrap(), want);
    assert_eq!(pool.starmap_async(add, pairs).unwrap().get().unwrap(), want);
}

fn imaps(pool: &impl TaskPool) {
    let got: Vec<u64> = pool
        .imap(square, 0..300u64)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, (0..300u64).map(|x| x * x).collect::<Vec<_>>());
    let mut got: Vec<u64> = pool
        .imap_unordered_with(square, 0..300u64, Opts::new().chunksize(10))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..300u64).map(|x| x * x).collect::<Vec<_>>());
    let first: Vec<u64> = pool
        .imap(square, 0u64..)
        .unwrap()
        .take(20)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(first[19], 361);
}

fn panics(pool: &impl TaskPool) {
    match pool.apply(odd_panics, (3,)) {
        Err(Error::TaskPanicked { message, .. }) => {
            assert!(message.contains("odd input 3"), "{message}")
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert!(matches!(
        pool.map(odd_panics, 0..6u32),
        Err(Error::TaskPanicked { .. })
    ));
    let items: Vec<_> = pool.imap(odd_panics, 0..6u32).unwrap().collect();
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.is_ok(), i % 2 == 0, "{i}: {item:?}");
    }
    assert_eq!(
        pool.apply(add, (1, 1)).unwrap(),
        2,
        "the pool keeps working"
    );
}

fn options(pool: &impl TaskPool) {
    assert!(matches!(
        pool.map_with(square, 0..3u64, Opts::new().chunksize(0)),
        Err(Error::InvalidArgument(_))
    ));
    let r = pool.apply_with(sleep_ms, (300,), Opts::new().timeout(Duration::ZERO));
    assert!(matches!(r, Err(Error::Timeout)));
}

fn shutdown(pool: &impl TaskPool) {
    assert!(matches!(pool.join(), Err(Error::PoolRunning)));
    let pending: Vec<_> = (0..10)
        .map(|i| pool.apply_async(add, (i, i)).unwrap())
        .collect();
    pool.close();
    assert!(matches!(pool.apply(add, (1, 1)), Err(Error::PoolClosed)));
    assert!(matches!(pool.map(square, 0..3u64), Err(Error::PoolClosed)));
    pool.join().unwrap();
    for (i, r) in pending.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), 2 * i as i64);
    }
}

fn terminate(pool: &impl TaskPool) {
    let pending: Vec<_> = (0..300)
        .map(|_| pool.apply_async(sleep_ms, (5,)).unwrap())
        .collect();
    pool.terminate();
    let mut cancelled = 0;
    for r in pending {
        match r.get_timeout(LONG) {
            Ok(5) => {}
            Err(Error::PoolTerminated) => cancelled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(cancelled > 250, "only {cancelled} cancelled");
    assert!(matches!(pool.apply(add, (1, 1)), Err(Error::PoolClosed)));
}

/// Generates one test per check and backend: `processes::NAME` and `threads::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod processes {
            $(
                #[multiproc::test]
                fn $name() {
                    super::$name(&multiproc::Pool::new(2).unwrap());
                }
            )*
        }
        mod threads {
            $(
                #[multiproc::test]
                fn $name() {
                    super::$name(&multiproc::dummy::Pool::new(3).unwrap());
                }
            )*
        }
    };
}

on_both_backends!(calls, maps, imaps, panics, options, shutdown, terminate);

// What only the thread pool does.

#[test]
fn threads_take_closures_and_unserializable_values() {
    let pool = multiproc::dummy::Pool::new(2).unwrap();
    let base = Arc::new(Mutex::new(10u64));
    let b = base.clone();
    assert_eq!(
        pool.apply(move |x: u64| x + *b.lock().unwrap(), (5,))
            .unwrap(),
        15
    );
    // An Rc-free but unserializable value: a channel end.
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    pool.apply(
        move |tx: std::sync::mpsc::Sender<u32>| tx.send(7).unwrap(),
        (tx,),
    )
    .unwrap();
    assert_eq!(rx.recv().unwrap(), 7);
    let v = pool.map(|x: u32| x * 3, 0..10u32).unwrap();
    assert_eq!(v[9], 27);
}

#[test]
fn thread_initializer_runs_once_per_thread() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let pool = multiproc::dummy::Pool::builder()
        .processes(4)
        .initializer(
            move |n: usize| {
                c.fetch_add(n, Ordering::SeqCst);
            },
            (1,),
        )
        .build()
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    drop(pool);
    let r = multiproc::dummy::Pool::builder()
        .processes(2)
        .initializer(|| panic!("no"), ())
        .build();
    assert!(matches!(r, Err(Error::InitializerFailed { .. })));
    assert!(matches!(
        multiproc::dummy::Pool::new(0),
        Err(Error::InvalidArgument(_))
    ));
}
