//! The Pool API through real worker processes: every call of Python's Pool, its options and
//! its error paths.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::prelude::*;
use multiproc::StartMethod;

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
fn pid() -> u32 {
    std::process::id()
}

#[pool_task]
fn pid_of(_x: u32) -> u32 {
    std::process::id()
}

#[pool_task]
fn boom(x: u32) -> u32 {
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

#[pool_task]
fn concat(a: String, b: Vec<u8>, c: Option<(u8, bool)>) -> String {
    format!("{a}:{}:{c:?}", b.len())
}

static GREETING: Mutex<Option<String>> = Mutex::new(None);

#[pool_task]
fn set_greeting(s: String) {
    *GREETING.lock().unwrap() = Some(s);
}

#[pool_task]
fn greeting() -> Option<String> {
    GREETING.lock().unwrap().clone()
}

#[pool_task]
fn bad_initializer() {
    panic!("initializer refuses");
}

#[multiproc::test]
fn pool_task_stays_an_ordinary_function() {
    assert_eq!(square(4), 16);
    assert_eq!(add(2, 3), 5);
}

#[multiproc::test]
fn apply_runs_in_another_process() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(add, (40, 2)).unwrap(), 42);
    assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
    let worker = pool.apply(pid, ()).unwrap();
    assert_ne!(worker, std::process::id());
    assert!(pool.pids().contains(&worker));
    let s = pool
        .apply(concat, ("x".to_string(), vec![1, 2, 3], Some((7, true))))
        .unwrap();
    assert_eq!(s, "x:3:Some((7, true))");
}

#[multiproc::test]
fn apply_async_get_wait_ready_successful() {
    let pool = Pool::new(2).unwrap();
    let r = pool.apply_async(add, (1, 2)).unwrap();
    assert!(r.wait_timeout(LONG));
    assert!(r.ready());
    assert!(r.successful().unwrap());
    assert_eq!(r.get().unwrap(), 3);

    let r = pool.apply_async(boom, (1,)).unwrap();
    r.wait();
    assert!(!r.successful().unwrap());
    assert!(matches!(r.get(), Err(Error::TaskPanicked { .. })));
}

#[multiproc::test]
fn get_timeout_then_get_later() {
    let pool = Pool::new(1).unwrap();
    // The single worker is busy with the first task, so the second cannot be ready within
    // a zero timeout; it is still fetchable afterwards.
    let blocker = pool.apply_async(sleep_ms, (300,)).unwrap();
    let r = pool.apply_async(add, (2, 2)).unwrap();
    assert!(matches!(r.get_timeout(Duration::ZERO), Err(Error::Timeout)));
    assert!(matches!(r.successful(), Err(Error::NotReady)));
    assert_eq!(r.get_timeout(LONG).unwrap(), 4);
    assert!(matches!(r.get_timeout(LONG), Err(Error::ResultTaken)));
    assert_eq!(blocker.get().unwrap(), 300);
}

#[multiproc::test]
fn callbacks_run_in_the_parent_and_a_panicking_one_is_contained() {
    let pool = Pool::new(2).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let r = pool
        .apply_async_with(
            add,
            (5, 6),
            Opts::new().callback(move |v: &i64| g.lock().unwrap().push((*v, std::process::id()))),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 11);
    assert_eq!(*got.lock().unwrap(), vec![(11, std::process::id())]);

    let errs = Arc::new(AtomicUsize::new(0));
    let e2 = errs.clone();
    let r = pool
        .apply_async_with(
            boom,
            (3,),
            Opts::new().error_callback(move |e: &Error| {
                assert!(matches!(e, Error::TaskPanicked { .. }));
                e2.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    assert!(r.get().is_err());
    assert_eq!(errs.load(Ordering::SeqCst), 1);

    // A callback that panics neither hangs get() nor breaks the pool.
    let r = pool
        .apply_async_with(
            square,
            (3,),
            Opts::new().callback(|_: &u64| panic!("callback bug")),
        )
        .unwrap();
    assert_eq!(r.get_timeout(LONG).unwrap(), 9);
    let r = pool
        .map_async_with(
            square,
            0..10u64,
            Opts::new().callback(|_: &Vec<u64>| panic!("again")),
        )
        .unwrap();
    assert_eq!(r.get_timeout(LONG).unwrap().len(), 10);
    assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
}

/// A finished call lets go of its callbacks (and what they captured) with no later call to
/// push it out: a program may wait for a callback's channel to close, as it would for a
/// thread's.
#[multiproc::test]
fn a_finished_call_releases_its_callbacks() {
    let pool = Pool::new(2).unwrap();
    for round in 0..20u64 {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let r = if round % 2 == 0 {
            let tx = tx.clone();
            pool.apply_async_with(
                square,
                (round,),
                Opts::new().callback(move |v: &u64| tx.send(*v).unwrap()),
            )
            .unwrap()
        } else {
            let (t, e) = (tx.clone(), tx.clone());
            // Its result is never asked for: the handle goes at once.
            drop(
                pool.apply_async_with(
                    boom,
                    (round as u32,),
                    Opts::new()
                        .callback(move |v: &u32| t.send(u64::from(*v)).unwrap())
                        .error_callback(move |_: &Error| e.send(u64::MAX).unwrap()),
                )
                .unwrap(),
            );
            drop(tx);
            // The error callback ran (and then both closures were dropped): the channel
            // ends after one message.
            assert_eq!(rx.recv_timeout(LONG), Ok(u64::MAX));
            assert_eq!(
                rx.recv_timeout(LONG),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
            );
            continue;
        };
        drop(tx);
        assert_eq!(r.get_timeout(LONG).unwrap(), round * round);
        assert_eq!(rx.recv_timeout(LONG), Ok(round * round));
        assert_eq!(
            rx.recv_timeout(LONG),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "round {round}: the callback is still held after its call finished"
        );
    }
}

/// Callers blocked in `get` read their own result off the worker's channel when it comes
/// first: with several callers, a map and callbacks sharing two workers, every result still
/// reaches its own caller once, whichever thread reads it, and none waits behind another.
#[multiproc::test]
fn callers_reading_their_own_results_share_workers_with_everything_else() {
    let pool = Pool::new(2).unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..300i64 {
                    let r = pool.apply_async(add, (t * 1000, i)).unwrap();
                    let got = if i % 3 == 0 {
                        r.get_timeout(LONG).unwrap()
                    } else {
                        r.get().unwrap()
                    };
                    assert_eq!(got, t * 1000 + i);
                }
            });
        }
        s.spawn(|| {
            for _ in 0..20 {
                let v = pool
                    .map_with(square, 0..500u64, Opts::new().chunksize(3))
                    .unwrap();
                assert_eq!(v, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
            }
        });
        let (called, pool) = (called.clone(), &pool);
        s.spawn(move || {
            for i in 0..200i64 {
                let c = called.clone();
                let r = pool
                    .apply_async_with(
                        add,
                        (i, 1),
                        Opts::new().callback(move |v: &i64| {
                            assert_eq!(*v, i + 1);
                            c.fetch_add(1, Ordering::SeqCst);
                        }),
                    )
                    .unwrap();
                assert_eq!(r.get().unwrap(), i + 1);
            }
        });
    });
    assert_eq!(called.load(Ordering::SeqCst), 200);
}

#[pool_task]
fn big_result(mib: usize) -> Vec<u8> {
    vec![7u8; mib << 20]
}

fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A worker keeps the buffers a stream of big results grew only while work keeps coming:
/// idle, it gives the memory back.
#[multiproc::test]
fn an_idle_worker_gives_back_what_big_results_grew() {
    let pool = Pool::new(1).unwrap();
    let pid = pool.pids()[0];
    for _ in 0..2 {
        assert_eq!(pool.apply(big_result, (16,)).unwrap().len(), 16 << 20);
    }
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let kib = resident_kib(pid).expect("the worker's /proc status");
        if kib < 12 << 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "idle worker still holds {kib} KiB"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pool.apply(add, (1, 2)).unwrap(), 3);
}

#[multiproc::test]
fn map_keeps_order_for_every_chunksize() {
    let pool = Pool::new(3).unwrap();
    let want: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..1000u64).unwrap(), want);
    for cs in [1, 7, 100, 999, 1000, 5000] {
        let got = pool
            .map_with(square, 0..1000u64, Opts::new().chunksize(cs))
            .unwrap();
        assert_eq!(got, want, "chunksize {cs}");
    }
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
}

#[multiproc::test]
fn map_async_and_starmap_variants() {
    let pool = Pool::new(2).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let r = pool
        .map_async_with(
            square,
            0..100u64,
            Opts::new().chunksize(9).callback(move |v: &Vec<u64>| {
                d.store(v.len(), Ordering::SeqCst);
            }),
        )
        .unwrap();
    assert_eq!(r.get().unwrap()[99], 9801);
    assert_eq!(done.load(Ordering::SeqCst), 100);

    let pairs: Vec<(i64, i64)> = (0..50).map(|i| (i, 2 * i)).collect();
    let want: Vec<i64> = pairs.iter().map(|(a, b)| a + b).collect();
    assert_eq!(pool.starmap(add, pairs.clone()).unwrap(), want);
    let r = pool
        .starmap_async_with(add, pairs, Opts::new().chunksize(4))
        .unwrap();
    assert_eq!(r.get().unwrap(), want);
}

#[multiproc::test]
fn map_reports_the_first_failing_item_and_the_worker_survives() {
    let pool = Pool::new(1).unwrap();
    let before = pool.pids();
    let err = pool
        .map_with(boom, 0..10u32, Opts::new().chunksize(3))
        .unwrap_err();
    match err {
        Error::TaskPanicked { task, message, .. } => {
            assert!(task.ends_with("::boom"), "{task}");
            assert!(message.contains("odd input 1"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(pool.pids(), before, "a panic must not cost the worker");
    assert_eq!(pool.map(boom, vec![0, 2, 4]).unwrap(), vec![0, 2, 4]);
}

#[multiproc::test]
fn imap_and_imap_unordered() {
    let pool = Pool::new(2).unwrap();
    for cs in [1, 3, 100] {
        let got: Vec<u64> = pool
            .imap_with(square, 0..200u64, Opts::new().chunksize(cs))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
        let mut got: Vec<u64> = pool
            .imap_unordered_with(square, 0..200u64, Opts::new().chunksize(cs))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        got.sort_unstable();
        assert_eq!(got, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
    }
    // A panic is yielded at its position and the iteration goes on.
    let items: Vec<_> = pool.imap(boom, 0..6u32).unwrap().collect();
    assert_eq!(items.len(), 6);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.is_ok(), i % 2 == 0, "item {i}: {item:?}");
    }
}

#[multiproc::test]
fn imap_on_an_endless_input_stays_within_its_window() {
    let pool = Pool::new(2).unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let input = (0u64..).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let first: Vec<u64> = pool
        .imap(square, input)
        .unwrap()
        .take(50)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(first[49], 49 * 49);
    let pulled = pulled.load(Ordering::SeqCst);
    // The window is 64 chunks per worker, whatever the input's length.
    assert!(
        pulled <= 50 + 2 * 64,
        "imap read {pulled} items ahead of a consumer of 50"
    );
}

#[multiproc::test]
fn dropping_imap_midway_cancels_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    {
        let mut it = pool
            .imap(sleep_ms, std::iter::repeat_n(50u64, 1000))
            .unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 50);
    }
    assert_eq!(pool.map(square, 0..10u64).unwrap()[3], 9);
    pool.close();
    pool.join().unwrap();
}

#[multiproc::test]
fn imap_timeout_yields_timeout_then_the_item() {
    let pool = Pool::new(1).unwrap();
    let mut it = pool
        .imap_with(sleep_ms, vec![400u64], Opts::new().timeout(Duration::ZERO))
        .unwrap();
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    drop(it);
    let mut it = pool
        .imap_with(sleep_ms, vec![1u64], Opts::new().timeout(LONG))
        .unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert!(it.next().is_none());
}

#[multiproc::test]
fn blocking_calls_honour_a_timeout() {
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_with(sleep_ms, (500,), Opts::new().timeout(Duration::ZERO));
    assert!(matches!(r, Err(Error::Timeout)));
    let r = pool.map_with(sleep_ms, vec![500], Opts::new().timeout(Duration::ZERO));
    assert!(matches!(r, Err(Error::Timeout)));
    assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
}

/// Options a method cannot honour do not compile (`tests/ui/fail/refused_options.rs`);
/// values out of range are errors.
#[multiproc::test]
fn option_values_out_of_range_are_errors() {
    let pool = Pool::new(1).unwrap();
    let r = pool.map_with(square, 0..3u64, Opts::new().chunksize(0));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let r = pool.imap_with(square, 0..3u64, Opts::new().chunksize(0));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let r = pool.starmap_async_with(square, vec![(1,)], Opts::new().chunksize(0));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

#[multiproc::test]
fn closures_and_unannotated_functions_are_refused() {
    fn plain(x: u64) -> u64 {
        x
    }
    let pool = Pool::new(1).unwrap();
    assert!(matches!(
        pool.apply(plain, (1,)),
        Err(Error::UnregisteredTask { .. })
    ));
    assert!(matches!(
        pool.map(|x: u64| x, 0..3u64),
        Err(Error::UnregisteredTask { .. })
    ));
    let e = pool.apply(|| 1u8, ()).unwrap_err().to_string();
    assert!(e.contains("#[pool_task]"), "{e}");
}

#[multiproc::test]
fn builder_rejects_zero() {
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
    let r = Pool::builder().processes(1).maxtasksperchild(0).build();
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
}

#[multiproc::test]
fn initializer_runs_once_in_every_worker() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(set_greeting, ("hello".to_string(),))
        .build()
        .unwrap();
    let seen = pool
        .map_with(|_: u32| greeting(), 0..1u32, Opts::new())
        .err();
    assert!(seen.is_some(), "closures are refused");
    for _ in 0..10 {
        assert_eq!(pool.apply(greeting, ()).unwrap().as_deref(), Some("hello"));
    }
}

#[multiproc::test]
fn a_failing_initializer_fails_the_build() {
    let r = Pool::builder()
        .processes(2)
        .initializer(bad_initializer, ())
        .build();
    match r {
        Err(Error::InitializerFailed { message }) => {
            assert!(message.contains("refuses"), "{message}")
        }
        other => panic!("expected InitializerFailed, got {other:?}"),
    }
}

#[multiproc::test]
fn maxtasksperchild_replaces_workers() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let pids: HashSet<u32> = pool
        .map_with(pid_of, 0..24u32, Opts::new().chunksize(1))
        .unwrap()
        .into_iter()
        .collect();
    // 24 jobs, at most 3 per worker: at least 8 distinct workers served them.
    assert!(pids.len() >= 8, "only {} distinct workers", pids.len());
    assert_ne!(
        pool.apply(pid, ()).unwrap(),
        std::process::id(),
        "the pool still serves"
    );
}

#[multiproc::test]
fn close_join_and_calls_on_a_closed_pool() {
    let pool = Pool::new(2).unwrap();
    assert!(matches!(pool.join(), Err(Error::PoolRunning)));
    let pending: Vec<_> = (0..20)
        .map(|i| pool.apply_async(add, (i, i)).unwrap())
        .collect();
    pool.close();
    assert!(matches!(pool.apply(add, (1, 1)), Err(Error::PoolClosed)));
    assert!(matches!(pool.map(square, 0..3u64), Err(Error::PoolClosed)));
    assert!(matches!(pool.imap(square, 0..3u64), Err(Error::PoolClosed)));
    pool.join().unwrap();
    for (i, r) in pending.into_iter().enumerate() {
        assert_eq!(
            r.get().unwrap(),
            2 * i as i64,
            "work submitted before close completes"
        );
    }
    assert!(pool.pids().is_empty());
}

#[multiproc::test]
fn terminate_fails_pending_work_promptly() {
    let pool = Pool::new(2).unwrap();
    let pending: Vec<_> = (0..3000)
        .map(|_| pool.apply_async(sleep_ms, (20,)).unwrap())
        .collect();
    pool.terminate();
    let mut terminated = 0;
    for r in pending {
        match r.get_timeout(LONG) {
            Ok(20) => {}
            Err(Error::PoolTerminated) => terminated += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        terminated > 2900,
        "only {terminated} of 3000 were cancelled"
    );
    assert!(matches!(pool.apply(add, (1, 1)), Err(Error::PoolClosed)));
    pool.join().unwrap();
}

#[multiproc::test]
fn fork_server_start_method() {
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::ForkServer)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    assert_eq!(pool.map(square, 0..100u64).unwrap()[10], 100);
    let pids: HashSet<u32> = pool
        .map_with(pid_of, 0..10u32, Opts::new().chunksize(1))
        .unwrap()
        .into_iter()
        .collect();
    assert!(pids.len() >= 5, "forked replacements serve too: {pids:?}");
    assert!(!pids.contains(&std::process::id()));
}

#[multiproc::test]
fn many_workers_on_few_cores() {
    let pool = Pool::new(64).unwrap();
    assert_eq!(pool.pids().len(), 64);
    let pids: HashSet<u32> = pool.map(pid_of, 0..640u32).unwrap().into_iter().collect();
    assert!(pids.len() > 1);
    let total: u64 = pool.map(square, 0..10_000u64).unwrap().iter().sum();
    assert_eq!(total, (0..10_000u64).map(|x| x * x).sum::<u64>());
}

#[multiproc::test]
fn pools_can_be_shared_between_threads() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let handles: Vec<_> = (0..4i64)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                (0..50i64)
                    .map(|i| pool.apply(add, (t, i)).unwrap())
                    .sum::<i64>()
            })
        })
        .collect();
    let total: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        total,
        (0..4i64).map(|t| (0..50).map(|i| t + i).sum::<i64>()).sum()
    );
}
