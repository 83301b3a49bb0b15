//! Fault policies beyond Python, through real worker processes: a timeout that kills the
//! task's worker, retries for tasks lost with their worker, memory caps, and worker starts
//! that back off instead of breaking the pool.

use std::time::Duration;

use multiproc::prelude::*;
use multiproc::RawValue;

const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
fn pid() -> u32 {
    std::process::id()
}

/// Returns at once, except for `hang`, which never returns.
#[pool_task]
fn maybe_hang(x: u64, hang: u64) -> u64 {
    if x == hang {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    x * 10
}

#[pool_task]
fn hang_forever() -> u32 {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Tells its pid, then never returns.
#[pool_task]
fn tell_and_hang(told: Queue<u32>) -> u32 {
    told.put(&std::process::id()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn is_gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) != 0 }
}

#[multiproc::test]
fn kill_after_fails_the_task_and_replaces_its_worker() {
    let pool = Pool::new(2).unwrap();
    let told = Queue::new().unwrap();
    let limit = Duration::from_millis(300);
    match pool.apply_with(
        tell_and_hang,
        (told.clone(),),
        Opts::new().kill_after(limit),
    ) {
        Err(Error::TaskTimedOut { task, after }) => {
            assert!(task.ends_with("::tell_and_hang"), "{task}");
            assert_eq!(after, limit);
        }
        other => panic!("expected TaskTimedOut, got {other:?}"),
    }
    let stuck = told.get_timeout(LONG).unwrap();
    assert!(is_gone(stuck), "the stuck worker was killed and reaped");
    assert_eq!(pool.apply(add, (1, 2)).unwrap(), 3);
    let deadline = std::time::Instant::now() + LONG;
    while pool.pids().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no replacement came");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!pool.pids().contains(&stuck));
    // The limit is distinct from `timeout`, which only stops waiting.
    let r = pool.apply_with(add, (2, 2), Opts::new().kill_after(LONG).timeout(LONG));
    assert_eq!(r.unwrap(), 4);
    // A limit of zero is refused.
    let r = pool.apply_with(add, (2, 2), Opts::new().kill_after(Duration::ZERO));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

#[multiproc::test]
fn kill_after_in_a_map_fails_only_the_stuck_item() {
    let pool = Pool::new(2).unwrap();
    for chunksize in [1, 4] {
        let opts = Opts::new()
            .chunksize(chunksize)
            .kill_after(Duration::from_millis(300));
        let items = (0..24u64).map(|x| (x, 13));
        let got: Vec<Result<u64, Error>> = pool
            .imap_with(maybe_hang_pair, items, opts)
            .unwrap()
            .collect();
        for (x, r) in got.iter().enumerate() {
            if x == 13 {
                assert!(matches!(r, Err(Error::TaskTimedOut { .. })), "{r:?}");
            } else {
                assert_eq!(r.as_ref().ok(), Some(&(x as u64 * 10)), "item {x}: {r:?}");
            }
        }
    }
    // map reports the first failing item, and every other job still ran.
    let r = pool.starmap_with(
        maybe_hang,
        (0..8u64).map(|x| (x, 3)),
        Opts::new().kill_after(Duration::from_millis(300)),
    );
    assert!(matches!(r, Err(Error::TaskTimedOut { .. })), "{r:?}");
}

#[pool_task]
fn maybe_hang_pair(job: (u64, u64)) -> u64 {
    maybe_hang(job.0, job.1)
}

#[multiproc::test]
fn a_pool_wide_kill_after_bounds_drop() {
    let pool = Pool::builder()
        .processes(2)
        .kill_after(Duration::from_millis(300))
        .build()
        .unwrap();
    let stuck = pool.apply_async(hang_forever, ()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pool); // close + join: waits for the stuck task, which the policy kills
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("dropping the pool hung on a task that never returns");
    assert!(matches!(
        stuck.get_timeout(LONG),
        Err(Error::TaskTimedOut { .. })
    ));
}

/// Kills its own worker the first `deaths` times it runs for `key` (counted in `runs`).
#[pool_task]
fn die_first(runs: RawValue<u32>, deaths: u32) -> u32 {
    let run = runs.fetch_add(1);
    if run < deaths {
        // SAFETY: a plain syscall on our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::thread::sleep(LONG);
    }
    run
}

#[multiproc::test]
fn retries_rerun_a_task_lost_with_its_worker() {
    let pool = Pool::new(2).unwrap();
    // Off by default: the loss is the answer.
    let runs = RawValue::new(0u32).unwrap();
    match pool.apply(die_first, (runs.clone(), 1)) {
        Err(Error::WorkerLost { attempts, .. }) => assert_eq!(attempts, 1),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(runs.load(), 1);
    // One retry: the second run succeeds.
    let runs = RawValue::new(0u32).unwrap();
    let r = pool.apply_with(die_first, (runs.clone(), 1), Opts::new().retries(1));
    assert_eq!(r.unwrap(), 1);
    assert_eq!(runs.load(), 2);
    // A task that kills every worker it lands on: n + 1 runs, then WorkerLost saying so.
    let runs = RawValue::new(0u32).unwrap();
    match pool.apply_with(die_first, (runs.clone(), 100), Opts::new().retries(2)) {
        Err(Error::WorkerLost { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(runs.load(), 3);
    // A panic is not a lost worker: never retried.
    let r = pool.apply_with(panics, (), Opts::new().retries(3));
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
}

#[pool_task]
fn panics() -> u32 {
    panic!("no retry for me")
}

#[pool_task]
fn die_first_item(job: (u32, RawValue<u32>)) -> u32 {
    let (x, runs) = job;
    if x == 5 && runs.fetch_add(1) == 0 {
        // SAFETY: a plain syscall on our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::thread::sleep(LONG);
    }
    x
}

#[multiproc::test]
fn a_pool_wide_retry_policy_covers_maps() {
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    for chunksize in [1, 4] {
        let runs = RawValue::new(0u32).unwrap();
        let items: Vec<_> = (0..12u32).map(|x| (x, runs.clone())).collect();
        let got = pool
            .map_with(die_first_item, items, Opts::new().chunksize(chunksize))
            .unwrap();
        assert_eq!(got, (0..12u32).collect::<Vec<_>>());
        assert_eq!(
            runs.load(),
            2,
            "item 5 ran twice: once killed, once retried"
        );
    }
}

#[pool_task]
fn hog(megabytes: usize) -> u32 {
    // Keep it: the worker's memory stays high after the task.
    let v = vec![1u8; megabytes << 20];
    std::hint::black_box(&v);
    std::mem::forget(v);
    std::process::id()
}

#[multiproc::test]
fn a_worker_over_its_memory_cap_is_replaced_before_its_next_task() {
    let pool = Pool::builder()
        .processes(1)
        .max_memory_per_child(64 << 20)
        .build()
        .unwrap();
    let light = pool.apply(hog, (1,)).unwrap();
    assert_eq!(
        pool.apply(pid, ()).unwrap(),
        light,
        "under the cap: same worker"
    );
    let heavy = pool.apply(hog, (128,)).unwrap();
    assert_eq!(heavy, light);
    let next = pool.apply(pid, ()).unwrap();
    assert_ne!(next, heavy, "over the cap: replaced before the next task");
}

#[multiproc::test]
fn a_runaway_allocation_under_a_hard_limit_kills_one_worker_only() {
    let pool = Pool::builder()
        .processes(2)
        .worker_memory_limit(256 << 20)
        .build()
        .unwrap();
    match pool.apply(hog, (1024,)) {
        Err(Error::WorkerLost { signal, .. }) => assert_eq!(signal, Some(libc::SIGABRT)),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(pool.apply(add, (20, 22)).unwrap(), 42);
    assert_eq!(pool.apply(hog, (8,)).map(|_| ()).ok(), Some(()));
}

/// Publishes its pid, then, while `stall` is set, waits forever: a start the test kills.
#[pool_task]
fn slow_start(stall: RawValue<u32>, started: Queue<u32>) {
    started.put(&std::process::id()).unwrap();
    while stall.load() != 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[pool_task]
fn kill_me() {
    // SAFETY: a plain syscall on our own process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    std::thread::sleep(LONG);
}

#[multiproc::test]
fn replacements_killed_during_their_start_do_not_break_the_pool() {
    let stall = RawValue::new(0u32).unwrap();
    let started = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(slow_start, (stall.clone(), started.clone()))
        .build()
        .unwrap();
    started.get_timeout(LONG).unwrap();
    started.get_timeout(LONG).unwrap();
    stall.store(1);
    assert!(matches!(
        pool.apply(kill_me, ()),
        Err(Error::WorkerLost { .. })
    ));
    // Kill the replacement in its start, five times over; the other worker serves meanwhile.
    for _ in 0..5 {
        let victim = started.get_timeout(LONG).unwrap();
        // SAFETY: a plain syscall on a worker of ours.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
    }
    stall.store(0);
    // A later start succeeds, and the pool is whole again.
    let deadline = std::time::Instant::now() + LONG;
    while pool.pids().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no replacement came");
        let _ = started.get_timeout(Duration::from_millis(50));
    }
    let pids: std::collections::HashSet<u32> =
        (0..40).map(|_| pool.apply(pid, ()).unwrap()).collect();
    assert!(!pids.is_empty());
}

#[pool_task]
fn killed_in_start() {
    // SAFETY: a plain syscall on our own process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[multiproc::test]
fn a_start_failure_tells_the_real_cause() {
    let e = Pool::builder()
        .processes(1)
        .initializer(killed_in_start, ())
        .build()
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("signal 9"), "{msg}");
    assert!(
        !msg.contains("init()"),
        "a killed worker is not a missing init(): {msg}"
    );
}

#[test]
fn thread_pools_refuse_kill_after() {
    let pool = multiproc::dummy::Pool::new(1).unwrap();
    let r = pool.apply_with(|x: u32| x, (1,), Opts::new().kill_after(LONG));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

#[multiproc::test]
fn a_first_or_shorter_limit_reaches_a_worker_already_waiting() {
    // The slot thread of an idle pool waits on its worker with no deadline; the first job
    // with a limit, then one with a shorter limit than the pool's, must still be watched.
    for default in [None, Some(LONG)] {
        let mut builder = Pool::builder().processes(1);
        if let Some(limit) = default {
            builder = builder.kill_after(limit);
        }
        let pool = builder.build().unwrap();
        assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
        // Let the slot thread settle into its wait. (Not synchronization: the test passes
        // without this pause when the pool is right; the pause lets it catch a pool that
        // is not.)
        std::thread::sleep(Duration::from_millis(50));
        let r = pool.apply_with(
            hang_forever,
            (),
            Opts::new()
                .kill_after(Duration::from_millis(200))
                .timeout(LONG),
        );
        assert!(matches!(r, Err(Error::TaskTimedOut { .. })), "{r:?}");
        assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
    }
}
