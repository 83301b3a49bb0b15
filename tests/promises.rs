//! The pool's promises on uneven and hostile work, each reproduced from a report through real
//! worker processes: jobs never wait behind another on a busy worker while a worker is idle,
//! finished results are never held back by the next job, jobs queued behind a stuck one move,
//! a worker's death is blamed on exactly the item it was running, pool workers know who they
//! are, and `imap` starts when it is created.
//!
//! Scheduling tests assert on who ran what and what overlapped (worker pids and monotonic
//! start/end stamps taken inside the tasks), never on how long anything took.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use multiproc::prelude::*;
use multiproc::ProcessInfo;

const LONG: Duration = Duration::from_secs(120);

/// Monotonic clock in nanoseconds; the same clock in every process of the machine.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Where and when a job ran.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Stamp {
    pid: u32,
    start: u64,
    end: u64,
}

#[pool_task]
fn stamped_sleep(ms: u64) -> Stamp {
    let start = now_ns();
    std::thread::sleep(Duration::from_millis(ms));
    Stamp {
        pid: std::process::id(),
        start,
        end: now_ns(),
    }
}

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

#[pool_task]
fn block_until(go: Event) -> u32 {
    go.wait_timeout(LONG).unwrap();
    std::process::id()
}

/// Slack for "at the same moment" when comparing stamps of different processes: far below
/// every effect the tests look for (whole jobs of hundreds of milliseconds), far above
/// scheduling noise.
const SLACK_NS: u64 = 100_000_000;

/// No job waited while some worker sat idle: for every stretch in which a worker ran
/// nothing (before its first job, between two jobs, after its last), no job that was
/// already submitted started more than `SLACK_NS` after the stretch began.
fn assert_no_idle_worker_while_jobs_waited(pids: &[u32], submitted: u64, stamps: &[Stamp]) {
    let end_of_all = stamps.iter().map(|s| s.end).max().unwrap();
    for &w in pids {
        let mut mine: Vec<&Stamp> = stamps.iter().filter(|s| s.pid == w).collect();
        mine.sort_by_key(|s| s.start);
        let mut idle_from = submitted;
        let mut stretches = Vec::new();
        for s in &mine {
            stretches.push((idle_from, s.start));
            idle_from = s.end;
        }
        stretches.push((idle_from, end_of_all));
        for (from, to) in stretches {
            if to <= from + SLACK_NS {
                continue;
            }
            for j in stamps {
                assert!(
                    j.start <= from + SLACK_NS,
                    "a job started {} ms after worker {w} went idle (idle for {} ms); \
                     stamps: {stamps:?}",
                    (j.start - from) / 1_000_000,
                    (to - from) / 1_000_000,
                );
            }
        }
    }
}

/// Python's report: Pool(4), 20 jobs sleeping 0, 25, ..., 475 ms submitted at once.
#[multiproc::test]
fn uneven_jobs_never_wait_behind_a_busy_worker_while_one_is_idle() {
    let pool = Pool::new(4).unwrap();
    // Warm up: fast jobs make the scheduler pipeline deeply.
    pool.map_with(square, 0..2000u64, Opts::new().chunksize(1))
        .unwrap();
    let submitted = now_ns();
    let results: Vec<AsyncResult<Stamp>> = (0..20u64)
        .map(|i| pool.apply_async(stamped_sleep, (i * 25,)).unwrap())
        .collect();
    let stamps: Vec<Stamp> = results
        .into_iter()
        .map(|r| r.get_timeout(LONG).unwrap())
        .collect();
    assert_no_idle_worker_while_jobs_waited(&pool.pids(), submitted, &stamps);
}

/// Heavy-tailed: most items take 2 ms, a few 300 ms, in one map at chunksize 1.
#[multiproc::test]
fn a_heavy_tailed_map_keeps_every_worker_busy() {
    let pool = Pool::new(2).unwrap();
    pool.map_with(square, 0..2000u64, Opts::new().chunksize(1))
        .unwrap();
    let durations: Vec<u64> = (0..120u64)
        .map(|i| if i % 30 == 3 { 300 } else { 2 })
        .collect();
    let submitted = now_ns();
    let stamps = pool
        .map_with(stamped_sleep, durations, Opts::new().chunksize(1))
        .unwrap();
    assert_no_idle_worker_while_jobs_waited(&pool.pids(), submitted, &stamps);
}

/// A slow job followed by short ones: the short ones all run beside it, not after it.
#[multiproc::test]
fn short_jobs_do_not_queue_behind_a_slow_one() {
    let pool = Pool::new(2).unwrap();
    for _ in 0..3 {
        pool.map_with(square, 0..500u64, Opts::new().chunksize(1))
            .unwrap();
        let slow = pool.apply_async(stamped_sleep, (800,)).unwrap();
        let short: Vec<_> = (0..3)
            .map(|_| pool.apply_async(stamped_sleep, (60,)).unwrap())
            .collect();
        let slow = slow.get_timeout(LONG).unwrap();
        for s in short {
            let s = s.get_timeout(LONG).unwrap();
            assert_ne!(s.pid, slow.pid, "a short job waited behind the slow one");
        }
    }
}

/// Two jobs submitted right after a map returns run side by side (the in-flight counts the
/// scheduler sees are never stale).
#[multiproc::test]
fn two_jobs_after_a_map_run_on_both_workers() {
    let pool = Pool::new(2).unwrap();
    for round in 0..60 {
        pool.map(square, 0..64u64).unwrap();
        let a = pool.apply_async(stamped_sleep, (50,)).unwrap();
        let b = pool.apply_async(stamped_sleep, (50,)).unwrap();
        let (a, b) = (a.get_timeout(LONG).unwrap(), b.get_timeout(LONG).unwrap());
        assert!(
            a.start < b.end && b.start < a.end,
            "round {round}: the two jobs did not overlap: {a:?} {b:?}"
        );
    }
}

/// A map's finished results are not held back while the same worker runs the next job.
fn a_finished_map_does_not_wait_for_the_next_job(processes: usize) {
    let pool = Pool::new(processes).unwrap();
    for chunksize in [1, 20] {
        let go = Event::new().unwrap();
        let map = pool
            .map_async_with(square, 0..2000u64, Opts::new().chunksize(chunksize))
            .unwrap();
        let blockers: Vec<_> = (0..processes)
            .map(|_| pool.apply_async(block_until, (go.clone(),)).unwrap())
            .collect();
        let v = map
            .get_timeout(Duration::from_secs(60))
            .expect("the map's results waited for the next job");
        assert_eq!(v[1999], 1999 * 1999);
        assert!(blockers.iter().all(|b| !b.ready()));
        go.set();
        for b in blockers {
            b.get_timeout(LONG).unwrap();
        }
    }
}

#[multiproc::test]
fn a_finished_map_does_not_wait_for_the_next_job_on_one_worker() {
    a_finished_map_does_not_wait_for_the_next_job(1);
}

#[multiproc::test]
fn a_finished_map_does_not_wait_for_the_next_job_on_two_workers() {
    a_finished_map_does_not_wait_for_the_next_job(2);
}

/// Jobs already queued on a worker that then runs a task that never returns move to the
/// idle worker.
#[multiproc::test]
fn jobs_queued_behind_a_stuck_task_move_to_a_free_worker() {
    let pool = Pool::new(2).unwrap();
    pool.map_with(square, 0..1000u64, Opts::new().chunksize(1))
        .unwrap();
    let go = Event::new().unwrap();
    let stuck = pool.apply_async(block_until, (go.clone(),)).unwrap();
    let opts = Opts::new().chunksize(1).timeout(Duration::from_secs(60));
    let got: Vec<u64> = pool
        .imap_with(square, 0..64u64, opts)
        .unwrap()
        .map(|r| r.expect("an item stayed stranded behind the stuck task"))
        .collect();
    assert_eq!(got, (0..64u64).map(|x| x * x).collect::<Vec<_>>());
    let plain = pool.apply_async(square, (9,)).unwrap();
    assert_eq!(plain.get_timeout(Duration::from_secs(60)).unwrap(), 81);
    assert!(!stuck.ready());
    go.set();
    stuck.get_timeout(LONG).unwrap();
}

/// Records that `x` ran (before anything else), then kills its own worker if `x == poison`.
#[pool_task]
fn run_or_die(job: (u64, u64, Queue<u64>)) -> u64 {
    let (x, poison, ran) = job;
    ran.put(&x).unwrap();
    if x == poison {
        // SAFETY: a plain syscall on our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::thread::sleep(LONG);
    }
    x * 2
}

#[pool_task]
fn record(x: u64, ran: Queue<u64>) -> u64 {
    ran.put(&x).unwrap();
    x + 1
}

#[pool_task]
fn record_then_abort(ran: Queue<u64>) {
    ran.put(&u64::MAX).unwrap();
    std::process::abort();
}

fn run_counts(ran: &Queue<u64>) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    while let Ok(x) = ran.get_nowait() {
        *counts.entry(x).or_default() += 1;
    }
    counts
}

/// Python's report: `imap(f, range(10))` at chunksize 1 where item 7 kills its worker.
#[multiproc::test]
fn a_poison_item_is_blamed_alone_and_runs_once() {
    let pool = Pool::new(2).unwrap();
    for _ in 0..3 {
        let ran = Queue::new().unwrap();
        let items = (0..10u64).map(|x| (x, 7, ran.clone()));
        let out: Vec<Result<u64, Error>> = pool
            .imap_with(run_or_die, items, Opts::new().chunksize(1))
            .unwrap()
            .collect();
        for (x, r) in out.iter().enumerate() {
            if x == 7 {
                assert!(matches!(r, Err(Error::WorkerLost { .. })), "item 7: {r:?}");
            } else {
                assert_eq!(r.as_ref().ok(), Some(&(2 * x as u64)), "item {x}: {r:?}");
            }
        }
        let counts = run_counts(&ran);
        assert_eq!(
            counts.get(&7),
            Some(&1),
            "the poison item ran again: {counts:?}"
        );
        for x in 0..10 {
            // Only an item whose result died unsent with the worker runs again, once.
            assert!((1..=2).contains(&counts[&x]), "item {x}: {counts:?}");
        }
    }
}

/// Python's report: a map whose items all succeed, followed by a task that aborts.
#[multiproc::test]
fn a_map_is_not_blamed_for_the_task_that_killed_a_worker() {
    let pool = Pool::new(2).unwrap();
    for chunksize in [1, 1, 20, 20] {
        let ran = Queue::new().unwrap();
        let map = pool
            .starmap_async_with(
                record,
                (0..2000u64).map(|x| (x, ran.clone())),
                Opts::new().chunksize(chunksize),
            )
            .unwrap();
        let fatal = pool.apply_async(record_then_abort, (ran.clone(),)).unwrap();
        let v = map.get_timeout(LONG).expect("the map was blamed");
        assert_eq!(v, (1..=2000u64).collect::<Vec<_>>());
        assert!(matches!(
            fatal.get_timeout(LONG),
            Err(Error::WorkerLost { .. })
        ));
        let counts = run_counts(&ran);
        assert_eq!(
            counts.get(&u64::MAX),
            Some(&1),
            "the aborting task ran again"
        );
        assert!(counts.values().all(|&n| n <= 2), "{counts:?}");
        assert_eq!(counts.len(), 2001);
    }
}

/// The same at every chunk size: the item a worker was running is the only one lost.
#[multiproc::test]
fn a_poison_item_inside_a_chunk_is_the_only_item_lost() {
    let pool = Pool::new(2).unwrap();
    for chunksize in [3, 10, 64] {
        let ran = Queue::new().unwrap();
        let items: Vec<_> = (0..64u64).map(|x| (x, 40, ran.clone())).collect();
        let out: Vec<Result<u64, Error>> = pool
            .imap_with(run_or_die, items, Opts::new().chunksize(chunksize))
            .unwrap()
            .collect();
        for (x, r) in out.iter().enumerate() {
            if x == 40 {
                assert!(matches!(r, Err(Error::WorkerLost { .. })), "{r:?}");
            } else {
                assert_eq!(r.as_ref().ok(), Some(&(2 * x as u64)), "item {x}: {r:?}");
            }
        }
        let counts = run_counts(&ran);
        assert_eq!(counts[&40], 1, "chunksize {chunksize}: {counts:?}");
    }
}

#[pool_task]
fn whoami() -> (ProcessInfo, Option<ProcessInfo>) {
    (multiproc::current_process(), multiproc::parent_process())
}

#[pool_task]
fn whoami_item(_x: u32) -> (ProcessInfo, Option<ProcessInfo>) {
    whoami()
}

fn check_identity(method: StartMethod, prefix: &str) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let mut names: HashMap<u32, String> = HashMap::new();
    let all = pool
        .map_with(whoami_item, 0..40u32, Opts::new().chunksize(1))
        .unwrap();
    for (me, parent) in all {
        assert!(me.name.starts_with(prefix), "{me:?}");
        assert!(me.name[prefix.len()..].parse::<u64>().is_ok(), "{me:?}");
        assert!(me.daemon, "{me:?}");
        assert!(pool.pids().contains(&me.pid), "{me:?}");
        let parent = parent.expect("a pool worker has a parent");
        assert_eq!(parent.pid, std::process::id());
        assert_eq!(parent.name, "MainProcess");
        if let Some(name) = names.insert(me.pid, me.name.clone()) {
            assert_eq!(name, me.name);
        }
    }
    let distinct: HashSet<&String> = names.values().collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    // Plain Process children keep their own identity.
    assert_eq!(multiproc::current_process().name, "MainProcess");
}

#[multiproc::test]
fn pool_workers_know_who_they_are() {
    check_identity(StartMethod::Spawn, "SpawnPoolWorker-");
    check_identity(StartMethod::ForkServer, "ForkServerPoolWorker-");
}

#[pool_task]
fn mark_started(e: Event) -> u32 {
    e.set();
    1
}

#[multiproc::test]
fn imap_starts_when_created() {
    let pool = Pool::new(2).unwrap();
    for ordered in [true, false] {
        let started = Event::new().unwrap();
        let items = std::iter::repeat_n(started.clone(), 4);
        let it = if ordered {
            pool.imap(mark_started, items).unwrap()
        } else {
            pool.imap_unordered(mark_started, items).unwrap()
        };
        assert!(
            started.wait_timeout(Duration::from_secs(30)).unwrap(),
            "nothing ran before the first next()"
        );
        assert_eq!(it.map(|r| r.unwrap()).sum::<u32>(), 4);
    }
}

#[pool_task]
fn wait_then_square(job: (u64, Event)) -> u64 {
    job.1.wait_timeout(LONG).unwrap();
    job.0 * job.0
}

#[multiproc::test]
fn imap_next_timeout_neither_ends_nor_poisons_the_iterator() {
    let pool = Pool::new(2).unwrap();
    let go = Event::new().unwrap();
    let mut it = pool
        .imap(wait_then_square, (0..4u64).map(|x| (x, go.clone())))
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            it.next_timeout(Duration::from_millis(20)),
            Some(Err(Error::Timeout))
        ));
    }
    go.set();
    assert_eq!(it.next_timeout(LONG).unwrap().unwrap(), 0);
    let rest: Vec<u64> = it.map(|r| r.unwrap()).collect();
    assert_eq!(rest, vec![1, 4, 9]);
}

#[pool_task]
fn blob_len(b: serde_bytes::ByteBuf) -> usize {
    b.len()
}

/// A job whose arguments do not fit in a socket's buffer never waits queued on a busy
/// worker: the write would block its caller until that worker's job ends.
#[multiproc::test]
fn a_big_argument_never_blocks_its_caller_behind_a_stuck_worker() {
    let pool = Pool::new(2).unwrap();
    let go = Event::new().unwrap();
    let stuck = pool.apply_async(block_until, (go.clone(),)).unwrap();
    let busy = pool.apply_async(stamped_sleep, (200,)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        // From another thread, so a caller blocked behind the stuck worker shows up as a
        // timeout here instead of a hung test.
        scope.spawn(|| {
            let blob = serde_bytes::ByteBuf::from(vec![7u8; 4 << 20]);
            let r = pool.apply_async(blob_len, (blob,));
            let _ = tx.send(r.map(|r| r.get_timeout(LONG)));
        });
        let got = rx.recv_timeout(Duration::from_secs(60));
        let still_stuck = !stuck.ready();
        go.set();
        let got = got.expect("the caller was blocked behind the stuck worker");
        assert_eq!(got.unwrap().unwrap(), 4 << 20);
        assert!(still_stuck);
    });
    busy.get_timeout(LONG).unwrap();
    stuck.get_timeout(LONG).unwrap();
}

/// `terminate` right after a worker died (while its other jobs are being put back) settles
/// every item: nothing is left waiting for a worker that will never come.
#[multiproc::test]
fn terminate_right_after_a_worker_death_settles_every_item() {
    for _ in 0..5 {
        let pool = Pool::new(2).unwrap();
        let ran = Queue::new().unwrap();
        let items: Vec<_> = (0..200u64).map(|x| (x, 5, ran.clone())).collect();
        let mut it = pool
            .imap_with(run_or_die, items, Opts::new().chunksize(1))
            .unwrap();
        let mut seen = 0;
        while let Some(r) = it.next_timeout(Duration::from_secs(60)) {
            match r {
                Err(Error::Timeout) => panic!("item {seen} was left waiting"),
                Err(Error::WorkerLost { .. }) => pool.terminate(),
                _ => {}
            }
            seen += 1;
        }
        assert_eq!(seen, 200);
    }
}
