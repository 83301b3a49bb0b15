//! Manager-served queues, locks, semaphores, events, conditions, barriers, values,
//! namespaces and `#[managed]` user types, used from real child processes (and over TCP):
//! their semantics, waits that do not hold up other calls, and what happens when a holder
//! dies.

mod common;

use std::time::Duration;

use multiproc::prelude::*;
use multiproc::{Manager, ManagerClient};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(120);

fn joined(p: Process) {
    assert!(p.join_timeout(LONG).unwrap().unwrap().success());
}

#[pool_task]
fn produce(q: QueueProxy<u32>, from: u32, n: u32) {
    for i in from..from + n {
        q.put(&i).unwrap();
    }
}

#[multiproc::test]
fn a_queue_carries_every_item_from_several_producers_in_their_order() {
    let m = Manager::new().unwrap();
    let q = m.queue::<u32>().unwrap();
    let ps: Vec<Process> = (0..3)
        .map(|k| Process::spawn(produce, (q.clone(), k * 1000, 50)).unwrap())
        .collect();
    let got: Vec<u32> = (0..150).map(|_| q.get_timeout(LONG).unwrap()).collect();
    for p in ps {
        joined(p);
    }
    for k in 0..3 {
        let mine: Vec<u32> = got.iter().copied().filter(|v| v / 1000 == k).collect();
        assert_eq!(mine, (k * 1000..k * 1000 + 50).collect::<Vec<_>>());
    }
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(20)),
        Err(Error::Empty)
    ));
}

#[multiproc::test]
fn a_bounded_queue_is_full_and_a_closed_one_drains_then_says_closed() {
    let m = Manager::new().unwrap();
    let q = m.queue_with_maxsize::<String>(2).unwrap();
    q.put(&"a".into()).unwrap();
    q.put_nowait(&"b".into()).unwrap();
    assert!(q.full().unwrap());
    assert!(matches!(q.put_nowait(&"c".into()), Err(Error::Full)));
    assert!(matches!(
        q.put_timeout(&"c".into(), Duration::from_millis(20)),
        Err(Error::Full)
    ));
    assert_eq!(q.qsize().unwrap(), 2);
    q.close().unwrap();
    assert!(q.is_closed().unwrap());
    assert!(matches!(q.put(&"d".into()), Err(Error::Closed)));
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.get().unwrap(), "b");
    assert!(matches!(q.get(), Err(Error::Closed)));
    assert!(q.empty().unwrap());
}

#[pool_task]
fn consume_all(q: JoinableQueueProxy<u32>, out: ListProxy<u32>) {
    loop {
        match q.get() {
            Ok(v) => {
                out.push(&(v * 2)).unwrap();
                q.task_done().unwrap();
            }
            Err(Error::Closed) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

#[multiproc::test]
fn a_joinable_queue_joins_when_a_consumer_process_marked_every_item_done() {
    let m = Manager::new().unwrap();
    let q = m.joinable_queue::<u32>(0).unwrap();
    let out = m.list::<u32>().unwrap();
    for i in 0..20 {
        q.put(&i).unwrap();
    }
    let p = Process::spawn(consume_all, (q.clone(), out.clone())).unwrap();
    q.join().unwrap();
    // Joined: every item was processed, not just taken.
    let mut got = out.to_vec().unwrap();
    got.sort();
    assert_eq!(got, (0..20).map(|i| i * 2).collect::<Vec<_>>());
    assert!(matches!(q.task_done(), Err(Error::ReleasedTooOften { .. })));
    q.close().unwrap();
    joined(p);
}

#[multiproc::test]
fn a_blocking_call_does_not_hold_up_other_calls_of_the_same_process() {
    let m = Manager::new().unwrap();
    let b = m.barrier(2).unwrap();
    let q = m.queue::<u32>().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| (b.wait_timeout(LONG).unwrap(), q.get_timeout(LONG).unwrap()));
        // Once the server counts the other thread at the barrier, its call is blocked there.
        while b.n_waiting().unwrap() == 0 {
            std::thread::yield_now();
        }
        for i in 0..50 {
            d.insert(&i, &(i * i)).unwrap();
        }
        assert_eq!(d.len().unwrap(), 50);
        let mine = b.wait_timeout(LONG).unwrap();
        q.put(&7).unwrap();
        let (theirs, item) = waiter.join().unwrap();
        let mut indices = [mine, theirs];
        indices.sort();
        assert_eq!(indices, [0, 1]);
        assert_eq!(item, 7);
    });
}

#[pool_task]
fn add_under_lock(lock: LockProxy, count: ValueProxy<u64>, n: u32) {
    for _ in 0..n {
        let g = lock.acquire().unwrap();
        // A read and a write apart: only the lock keeps increments from being lost.
        let v = count.get().unwrap();
        count.set(&(v + 1)).unwrap();
        g.release().unwrap();
    }
}

#[multiproc::test]
fn a_manager_lock_excludes_across_processes() {
    let m = Manager::new().unwrap();
    let lock = m.lock().unwrap();
    let count = m.value(&0u64).unwrap();
    let ps: Vec<Process> = (0..3)
        .map(|_| Process::spawn(add_under_lock, (lock.clone(), count.clone(), 40)).unwrap())
        .collect();
    for p in ps {
        joined(p);
    }
    assert_eq!(count.get().unwrap(), 120);
    assert!(!lock.locked().unwrap());
}

#[multiproc::test]
fn lock_and_rlock_semantics() {
    let m = Manager::new().unwrap();
    let lock = m.lock().unwrap();
    let g = lock.acquire().unwrap();
    assert!(lock.locked().unwrap());
    assert!(matches!(
        lock.try_acquire(),
        Err(LockError::Failed(Error::AlreadyHeld))
    ));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(lock.try_acquire().unwrap().is_none());
            assert!(lock
                .acquire_timeout(Duration::from_millis(20))
                .unwrap()
                .is_none());
        });
    });
    drop(g);
    assert!(!lock.locked().unwrap());
    let r = m.rlock().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    drop(a);
    assert!(r.locked().unwrap(), "held until every guard is gone");
    b.release().unwrap();
    assert!(!r.locked().unwrap());
}

#[pool_task]
fn take_and_die(lock: LockProxy, taken: EventProxy) {
    let g = lock.acquire().unwrap();
    taken.set().unwrap();
    std::mem::forget(g);
    std::process::abort();
}

#[multiproc::test]
fn a_lock_held_by_a_process_that_died_is_taken_over_and_the_taker_is_told() {
    let m = Manager::new().unwrap();
    let lock = m.lock().unwrap();
    let taken = m.event().unwrap();
    let p = Process::spawn(take_and_die, (lock.clone(), taken.clone())).unwrap();
    taken.wait_timeout(LONG).unwrap();
    let _ = p.join_timeout(LONG).unwrap();
    match lock.acquire_timeout(LONG) {
        Err(LockError::OwnerDied(g)) => drop(g),
        Ok(_) => panic!("taken without being told"),
        Err(LockError::Failed(e)) => panic!("{e}"),
    }
    // Told once: the next holder takes it cleanly.
    assert!(lock.acquire().is_ok());
}

#[multiproc::test]
fn semaphores_count_and_a_bounded_one_refuses_extra_releases() {
    let m = Manager::new().unwrap();
    let s = m.semaphore(2).unwrap();
    s.acquire().unwrap();
    assert!(s.try_acquire().unwrap());
    assert!(!s.try_acquire().unwrap());
    assert!(!s.acquire_timeout(Duration::from_millis(20)).unwrap());
    assert_eq!(s.value().unwrap(), 0);
    for _ in 0..3 {
        s.release().unwrap();
    }
    assert_eq!(s.value().unwrap(), 3, "an unbounded semaphore grows");
    let b = m.bounded_semaphore(1).unwrap();
    assert!(matches!(b.release(), Err(Error::ReleasedTooOften { .. })));
    b.acquire().unwrap();
    b.release().unwrap();
}

#[pool_task]
fn wait_then_answer(go: EventProxy, answer: QueueProxy<String>) {
    go.wait().unwrap();
    answer.put(&"went".to_string()).unwrap();
}

#[multiproc::test]
fn an_event_wakes_a_waiting_process() {
    let m = Manager::new().unwrap();
    let go = m.event().unwrap();
    let answer = m.queue().unwrap();
    assert!(!go.wait_timeout(Duration::from_millis(20)).unwrap());
    let p = Process::spawn(wait_then_answer, (go.clone(), answer.clone())).unwrap();
    assert!(matches!(answer.get_nowait(), Err(Error::Empty)));
    go.set().unwrap();
    assert_eq!(answer.get_timeout(LONG).unwrap(), "went");
    assert!(go.is_set().unwrap());
    go.clear().unwrap();
    assert!(!go.is_set().unwrap());
    joined(p);
}

/// Takes turns with the parent: waits for `turn` to be `me`, appends, passes the turn.
#[pool_task]
fn ping_pong(cond: ConditionProxy, turn: ValueProxy<u32>, log: ListProxy<u32>, me: u32, n: u32) {
    for _ in 0..n {
        let mut g = cond.acquire().unwrap();
        assert!(g
            .wait_for(|| turn.get().unwrap() == me, Some(LONG))
            .unwrap());
        log.push(&me).unwrap();
        turn.set(&(1 - me)).unwrap();
        g.notify_all().unwrap();
    }
}

#[multiproc::test]
fn a_condition_ping_pong_between_processes_alternates_to_the_end() {
    let m = Manager::new().unwrap();
    let cond = m.condition().unwrap();
    let turn = m.value(&0u32).unwrap();
    let log = m.list::<u32>().unwrap();
    // The child may notify before the parent waits, and the other way round: wait_for
    // checks the state first, so no notify is lost.
    let p = Process::spawn(ping_pong, (cond.clone(), turn.clone(), log.clone(), 1, 25)).unwrap();
    ping_pong(cond.clone(), turn, log.clone(), 0, 25);
    joined(p);
    let got = log.to_vec().unwrap();
    assert_eq!(got, (0..50).map(|i| i % 2).collect::<Vec<u32>>());
    // Waiting or notifying without the lock is refused, and a wait without a notify
    // times out holding the lock again.
    let mut g = cond.acquire().unwrap();
    assert!(!g.wait_timeout(Duration::from_millis(20)).unwrap());
    g.notify(1).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| assert!(cond.acquire_timeout(Duration::ZERO).unwrap().is_none()));
    });
    drop(g);
    std::thread::scope(|s| {
        s.spawn(|| assert!(cond.acquire_timeout(Duration::ZERO).unwrap().is_some()));
    });
}

#[pool_task]
fn arrive(b: BarrierProxy) -> u32 {
    b.wait_timeout(LONG).unwrap()
}

#[multiproc::test]
fn a_barrier_releases_its_parties_together_and_breaks_on_timeout_abort_and_death() {
    let m = Manager::new().unwrap();
    let b = m.barrier(3).unwrap();
    assert_eq!(b.parties().unwrap(), 3);
    let pool = Pool::new(2).unwrap();
    let rs: Vec<_> = (0..2)
        .map(|_| pool.apply_async(arrive, (b.clone(),)).unwrap())
        .collect();
    let mine = b.wait_timeout(LONG).unwrap();
    let mut all: Vec<u32> = rs.into_iter().map(|r| r.get().unwrap()).collect();
    all.push(mine);
    all.sort();
    assert_eq!(all, [0, 1, 2]);
    // A timeout breaks it for all; reset makes it whole.
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(20)),
        Err(Error::BrokenBarrier)
    ));
    assert!(b.broken().unwrap());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    b.abort().unwrap();
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    // A party whose process dies while waiting breaks it, instead of leaving the others
    // waiting for it forever.
    let two = m.barrier(2).unwrap();
    let p = Process::spawn(arrive, (two.clone(),)).unwrap();
    while two.n_waiting().unwrap() == 0 {
        std::thread::yield_now();
    }
    p.kill().unwrap();
    let _ = p.join_timeout(LONG).unwrap();
    // The server learns of the death when the dead process's connections close, a moment
    // after it: look until it has (a party arriving before then would complete the round).
    let until = std::time::Instant::now() + LONG;
    while !two.broken().unwrap() {
        assert!(
            std::time::Instant::now() < until,
            "the death never broke the barrier"
        );
        std::thread::yield_now();
    }
    assert!(matches!(two.wait_timeout(LONG), Err(Error::BrokenBarrier)));
}

#[pool_task]
fn bump(v: ValueProxy<Vec<u32>>, who: u32, n: u32) {
    for _ in 0..n {
        v.update(|old| {
            let mut new = old.clone();
            new.push(who);
            new
        })
        .unwrap();
    }
}

#[multiproc::test]
fn values_update_atomically_and_namespaces_keep_each_attribute_type() {
    let m = Manager::new().unwrap();
    let v = m.value(&Vec::<u32>::new()).unwrap();
    let ps: Vec<Process> = (0..2)
        .map(|who| Process::spawn(bump, (v.clone(), who, 30)).unwrap())
        .collect();
    for p in ps {
        joined(p);
    }
    let all = v.get().unwrap();
    assert_eq!(all.len(), 60, "no update lost");
    assert_eq!(v.swap(&vec![9]).unwrap().len(), 60);
    assert_eq!(v.get().unwrap(), vec![9]);

    let ns = m.namespace().unwrap();
    ns.set("x", &1u32).unwrap();
    ns.set("name", &"multiproc".to_string()).unwrap();
    assert_eq!(ns.get::<u32>("x").unwrap(), Some(1));
    assert_eq!(
        ns.get::<String>("name").unwrap().as_deref(),
        Some("multiproc")
    );
    assert_eq!(ns.get::<u32>("missing").unwrap(), None);
    assert!(matches!(
        ns.get::<String>("x"),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(ns.names().unwrap(), ["name", "x"]);
    assert!(ns.remove("x").unwrap());
    assert!(!ns.remove("x").unwrap());
}

#[pool_task]
fn use_the_registry(address: String, key: Vec<u8>) -> u32 {
    // A client that connected by itself finds the objects through a named dict of proxies.
    let c = Manager::connect(&address, &key).unwrap();
    let reg = c.dict_named::<String, QueueProxy<u32>>("queues").unwrap();
    let jobs = reg.get(&"jobs".into()).unwrap().unwrap();
    let locks = c.dict_named::<String, LockProxy>("locks").unwrap();
    let lock = locks.get(&"main".into()).unwrap().unwrap();
    let mut sum = 0;
    loop {
        let _g = lock.acquire().unwrap();
        match jobs.get_nowait() {
            Ok(j) => sum += j,
            Err(Error::Empty) => return sum,
            Err(e) => panic!("{e}"),
        }
    }
}

#[multiproc::test]
fn proxies_stored_in_other_objects_work_for_remote_clients_over_tcp() {
    let m = Manager::builder()
        .tcp("127.0.0.1:0")
        .authkey(b"served".to_vec())
        .start()
        .unwrap();
    let jobs = m.queue::<u32>().unwrap();
    for j in 1..=10 {
        jobs.put(&j).unwrap();
    }
    m.dict_named::<String, QueueProxy<u32>>("queues")
        .unwrap()
        .insert(&"jobs".into(), &jobs)
        .unwrap();
    m.dict_named::<String, LockProxy>("locks")
        .unwrap()
        .insert(&"main".into(), &m.lock().unwrap())
        .unwrap();
    let pool = Pool::new(2).unwrap();
    let sums: Vec<u32> = pool
        .starmap(
            use_the_registry,
            vec![(m.address().to_string(), b"served".to_vec()); 2],
        )
        .unwrap();
    assert_eq!(sums.iter().sum::<u32>(), 55);
    // A name opened with another proxy type is refused, not misread.
    assert!(matches!(
        m.dict_named::<String, QueueProxy<String>>("queues"),
        Err(Error::InvalidArgument(_))
    ));
}

/// Python's documentation example of a custom manager, ported: `MathsClass` with `add`
/// and `mul`, plus state kept between calls.
#[derive(Default, Serialize, Deserialize)]
struct Maths {
    calls: u64,
}

#[managed]
impl Maths {
    fn add(&mut self, x: i64, y: i64) -> i64 {
        self.calls += 1;
        x + y
    }

    fn mul(&mut self, x: i64, y: i64) -> i64 {
        self.calls += 1;
        x * y
    }

    fn calls(&self) -> u64 {
        self.calls
    }

    fn fail(&self, why: String) -> Result<(), String> {
        Err(why)
    }

    fn explode(&self) {
        panic!("boom");
    }

    /// Not exposed: no receiver.
    #[allow(dead_code)]
    fn new() -> Maths {
        Maths::default()
    }
}

#[pool_task]
fn use_maths(maths: MathsProxy, x: i64) -> i64 {
    maths.add(x, 1).unwrap() + maths.mul(x, 2).unwrap()
}

#[multiproc::test]
fn a_managed_type_serves_its_methods_to_every_process() {
    let m = Manager::new().unwrap();
    let maths = m.serve::<Maths>().unwrap();
    assert_eq!(maths.add(4, 3).unwrap(), 7);
    assert_eq!(maths.mul(7, 8).unwrap(), 56);
    let pool = Pool::new(2).unwrap();
    let got: Vec<i64> = pool
        .starmap(use_maths, (0..6).map(|x| (maths.clone(), x)))
        .unwrap();
    assert_eq!(got, (0..6).map(|x| (x + 1) + x * 2).collect::<Vec<_>>());
    // State lives on the server: every call from every process counted.
    assert_eq!(maths.calls().unwrap(), 2 + 12);
    assert_eq!(maths.fail("no".into()).unwrap(), Err("no".to_string()));
    // A panicking method is that caller's error; the object keeps serving.
    match maths.explode() {
        Err(Error::TaskPanicked { message, .. }) => assert!(message.contains("boom")),
        other => panic!("{other:?}"),
    }
    assert_eq!(maths.add(1, 1).unwrap(), 2);
    // A proxy stored in a managed dict comes back usable.
    let d = m.dict::<String, MathsProxy>().unwrap();
    d.insert(&"m".into(), &maths).unwrap();
    let again = d.get(&"m".into()).unwrap().unwrap();
    assert_eq!(again.add(2, 2).unwrap(), 4);
    let other = m.serve_value(&Maths { calls: 100 }).unwrap();
    assert_eq!(other.calls().unwrap(), 100);
}

#[multiproc::test]
fn a_client_of_another_manager_connection_is_told_of_bad_requests_and_the_server_goes_on() {
    let m = Manager::builder().max_message(64 * 1024).start().unwrap();
    let q = m.queue::<Vec<u8>>().unwrap();
    // Too large for the server: refused before it is sent, the queue unchanged.
    assert!(matches!(
        q.put(&vec![0u8; 128 * 1024]),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(q.qsize().unwrap(), 0);
    // The same server, seen from a separate client, is fine.
    let c: ManagerClient = Manager::connect(m.address(), m.authkey()).unwrap();
    let l = c.lock().unwrap();
    drop(l.acquire().unwrap());
    q.put(&vec![1, 2, 3]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1, 2, 3]);
}
