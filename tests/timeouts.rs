//! One timeout convention across the crate (the table in the crate docs), through real
//! processes: every call that takes a timeout accepts any `Duration` — `Duration::MAX`
//! included, meaning "at most that long" — and reports running out of time the way Python
//! does: acquires give `Ok(None)` / `Ok(false)`, waits for a state `false` / `None`, calls
//! that produce a value `Err(Timeout)`, queues `Empty` / `Full`, a barrier `BrokenBarrier`.

use std::time::Duration;

use multiproc::prelude::*;

const MAX: Duration = Duration::MAX;
const ZERO: Duration = Duration::ZERO;
const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

#[pool_task]
fn wait_for(go: Event) -> u32 {
    go.wait_timeout(LONG).unwrap();
    1
}

#[pool_task]
fn nothing() {}

#[multiproc::test]
fn pool_timeouts_take_any_duration() {
    let pool = Pool::builder()
        .processes(2)
        .start_timeout(MAX)
        .build()
        .unwrap();
    // Ready: Duration::MAX returns at once with the value.
    let r = pool.apply_async(square, (3,)).unwrap();
    assert!(r.wait_timeout(MAX));
    assert_eq!(r.get_timeout(MAX).unwrap(), 9);
    let o = Opts::new().timeout(MAX);
    assert_eq!(pool.apply_with(square, (4,), o).unwrap(), 16);
    let o = Opts::new().timeout(MAX);
    assert_eq!(pool.map_with(square, 0..4u64, o).unwrap(), [0, 1, 4, 9]);
    let o = Opts::new().timeout(MAX);
    assert_eq!(pool.starmap_with(square, vec![(5,)], o).unwrap(), [25]);
    let got: Vec<u64> = pool
        .imap_with(square, 0..3u64, Opts::new().timeout(MAX))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(got, [0, 1, 4]);
    let mut it = pool.imap(square, 0..2u64).unwrap();
    assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 0);
    // Not ready: a value-producing call is `Timeout`, a wait is `false`.
    let go = Event::new().unwrap();
    let slow = pool.apply_async(wait_for, (go.clone(),)).unwrap();
    assert!(!slow.wait_timeout(ZERO));
    assert!(matches!(slow.get_timeout(ZERO), Err(Error::Timeout)));
    let opts = Opts::new().timeout(ZERO);
    assert!(matches!(
        pool.apply_with(wait_for, (go.clone(),), opts),
        Err(Error::Timeout)
    ));
    let mut it = pool.imap(wait_for, vec![go.clone()]).unwrap();
    assert!(matches!(it.next_timeout(ZERO), Some(Err(Error::Timeout))));
    go.set();
    assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 1);
    assert_eq!(slow.get_timeout(MAX).unwrap(), 1);
}

#[multiproc::test]
fn process_queue_and_pipe_timeouts_take_any_duration() {
    let p = Process::spawn(nothing, ()).unwrap();
    assert_eq!(p.join_timeout(MAX).unwrap(), Some(ExitStatus::Code(0)));

    let q = Queue::with_maxsize(1).unwrap();
    assert!(matches!(q.get_timeout(ZERO), Err(Error::Empty)));
    q.put_timeout(&1u32, MAX).unwrap();
    assert!(matches!(q.put_timeout(&2, ZERO), Err(Error::Full)));
    assert_eq!(q.get_timeout(MAX).unwrap(), 1);

    let jq = JoinableQueue::new().unwrap();
    jq.put(&1u8).unwrap();
    assert!(!jq.join_timeout(ZERO).unwrap());
    jq.get().unwrap();
    jq.task_done().unwrap();
    assert!(jq.join_timeout(MAX).unwrap());

    let (a, b) = multiproc::pipe::<u32>().unwrap();
    assert!(!b.poll(Some(ZERO)).unwrap());
    assert!(matches!(b.recv_timeout(ZERO), Err(Error::Timeout)));
    a.send(&7).unwrap();
    assert!(b.poll(Some(MAX)).unwrap());
    assert_eq!(b.recv_timeout(MAX).unwrap(), 7);
}

#[multiproc::test]
fn lock_and_event_timeouts_take_any_duration() {
    let l = Lock::new().unwrap();
    let r = RLock::new().unwrap();
    let v = Value::new(1u32).unwrap();
    let a = Array::new(2, 0u8).unwrap();
    let c = Condition::new().unwrap();
    // Free: Duration::MAX gets the guard at once.
    drop(l.acquire_timeout(MAX).unwrap().unwrap());
    drop(r.acquire_timeout(MAX).unwrap().unwrap());
    drop(v.lock_timeout(MAX).unwrap().unwrap());
    drop(a.lock_timeout(MAX).unwrap().unwrap());
    {
        let mut g = c.acquire_timeout(MAX).unwrap().unwrap();
        assert!(g.wait_for(|| true, Some(MAX)).unwrap());
        assert!(!g.wait_timeout(ZERO).unwrap());
    }
    // Held elsewhere: an acquire that runs out of time is `Ok(None)`, as Python's `False`.
    let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let holder = {
        let (l, r, v, a, c) = (l.clone(), r.clone(), v.clone(), a.clone(), c.clone());
        let (held, release) = (held.0, release.1);
        std::thread::spawn(move || {
            let guards = (l.acquire(), r.acquire(), v.lock(), a.lock(), c.acquire());
            held.send(()).unwrap();
            release.recv().unwrap();
            drop(guards);
        })
    };
    held.1.recv().unwrap();
    assert!(l.acquire_timeout(ZERO).unwrap().is_none());
    assert!(r.acquire_timeout(ZERO).unwrap().is_none());
    assert!(v.lock_timeout(ZERO).unwrap().is_none());
    assert!(a.lock_timeout(ZERO).unwrap().is_none());
    assert!(c.acquire_timeout(ZERO).unwrap().is_none());
    release.0.send(()).unwrap();
    holder.join().unwrap();

    let s = Semaphore::new(1).unwrap();
    assert!(s.acquire_timeout(MAX).unwrap());
    assert!(!s.acquire_timeout(ZERO).unwrap());
    let bs = BoundedSemaphore::new(1).unwrap();
    assert!(bs.acquire_timeout(MAX).unwrap());
    assert!(!bs.acquire_timeout(ZERO).unwrap());

    let e = Event::new().unwrap();
    assert!(!e.wait_timeout(ZERO).unwrap());
    e.set();
    assert!(e.wait_timeout(MAX).unwrap());

    let one = Barrier::new(1).unwrap();
    assert_eq!(one.wait_timeout(MAX).unwrap(), 0);
    one.set_default_timeout(Some(MAX));
    assert_eq!(one.wait().unwrap(), 0);
    let two = Barrier::new(2).unwrap();
    assert!(matches!(two.wait_timeout(ZERO), Err(Error::BrokenBarrier)));
}

#[multiproc::test]
fn manager_timeouts_take_any_duration() {
    let m = Manager::builder()
        .tcp("127.0.0.1:0")
        .timeout(MAX)
        .start()
        .unwrap();
    let d = m.dict::<String, u32>().unwrap();
    d.insert(&"a".to_owned(), &1).unwrap();
    assert_eq!(d.get(&"a".to_owned()).unwrap(), Some(1));
    // A zero limit (1 ms, the least a socket takes) covers connecting, the handshake and the
    // round trip: on a loaded machine that may run out, and running out is `Timeout`.
    let near = Manager::builder().timeout(ZERO).start().unwrap();
    for _ in 0..20 {
        match near.list::<u8>() {
            Ok(l) => match l.push(&1) {
                Ok(()) | Err(Error::Timeout) => {}
                Err(e) => panic!("{e:?}"),
            },
            Err(Error::Timeout) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn thread_versions_take_any_duration() {
    use multiproc::dummy;
    let pool = dummy::Pool::new(2).unwrap();
    let r = pool.apply_async(|x: u64| x + 1, (1,)).unwrap();
    assert_eq!(r.get_timeout(MAX).unwrap(), 2);
    let mut it = pool.imap(|x: u64| x, 0..2u64).unwrap();
    assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 0);

    let q = dummy::Queue::with_maxsize(1).unwrap();
    assert!(matches!(q.get_timeout(ZERO), Err(Error::Empty)));
    q.put_timeout(&1u32, MAX).unwrap();
    assert!(matches!(q.put_timeout(&2, ZERO), Err(Error::Full)));
    assert_eq!(q.get_timeout(MAX).unwrap(), 1);
    let jq = dummy::JoinableQueue::new().unwrap();
    jq.put(&1u8).unwrap();
    assert!(!jq.join_timeout(ZERO).unwrap());
    jq.get().unwrap();
    jq.task_done().unwrap();
    assert!(jq.join_timeout(MAX).unwrap());

    let l = dummy::Lock::new().unwrap();
    drop(l.acquire_timeout(MAX).unwrap().unwrap());
    let s = dummy::Semaphore::new(1).unwrap();
    assert!(s.acquire_timeout(MAX).unwrap());
    assert!(!s.acquire_timeout(ZERO).unwrap());
    let c = dummy::Condition::new().unwrap();
    let mut g = c.acquire_timeout(MAX).unwrap().unwrap();
    assert!(!g.wait_timeout(ZERO).unwrap());
    assert!(g.wait_for(|| true, Some(MAX)).unwrap());
    drop(g);
    let e = dummy::Event::new().unwrap();
    e.set();
    assert!(e.wait_timeout(MAX).unwrap());
    let b = dummy::Barrier::new(1).unwrap();
    assert_eq!(b.wait_timeout(MAX).unwrap(), 0);
    let (tx, rx) = dummy::pipe::<u8>().unwrap();
    assert!(!rx.poll(Some(ZERO)).unwrap());
    tx.send(3).unwrap();
    assert_eq!(rx.recv_timeout(MAX).unwrap(), 3);
}
