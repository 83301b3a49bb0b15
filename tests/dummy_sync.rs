//! The thread versions of queues, pipes, values and locks (`multiproc::dummy`), used from
//! the thread pool and plain threads, with the process versions' semantics.

use std::time::Duration;

use multiproc::dummy;
use multiproc::{Error, LockError};

const LONG: Duration = Duration::from_secs(120);

#[test]
fn queues_between_pool_threads() {
    let q = dummy::Queue::with_maxsize(2).unwrap();
    q.put_nowait(&1).unwrap();
    q.put_nowait(&2).unwrap();
    assert!(q.full());
    assert!(matches!(q.put_nowait(&3), Err(Error::Full)));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get_nowait().unwrap(), 2);
    assert!(matches!(
        q.get_timeout(Duration::from_millis(5)),
        Err(Error::Empty)
    ));

    let pool = dummy::Pool::new(3).unwrap();
    let jobs = dummy::JoinableQueue::new().unwrap();
    let out = dummy::Queue::new().unwrap();
    let mut rs = Vec::new();
    for _ in 0..3 {
        let (jobs, out) = (jobs.clone(), out.clone());
        rs.push(
            pool.apply_async(
                move || {
                    while let Ok(x) = jobs.get() {
                        out.put(&(x * 2)).unwrap();
                        jobs.task_done().unwrap();
                    }
                },
                (),
            )
            .unwrap(),
        );
    }
    for i in 0..100u32 {
        jobs.put(&i).unwrap();
    }
    assert!(jobs.join_timeout(LONG).unwrap());
    assert_eq!(out.qsize(), 100);
    jobs.close();
    for r in rs {
        r.get_timeout(LONG).unwrap();
    }
    let mut got: Vec<u32> = (0..100).map(|_| out.get().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).map(|x| x * 2).collect::<Vec<_>>());
    assert!(matches!(
        jobs.task_done(),
        Err(Error::ReleasedTooOften { .. })
    ));
    let s = dummy::SimpleQueue::new().unwrap();
    s.put(&"x").unwrap();
    s.close();
    assert_eq!(s.get().unwrap(), "x");
    assert!(matches!(s.get(), Err(Error::Closed)));
}

#[test]
fn pipes_between_threads() {
    let (a, b) = dummy::pipe::<String>().unwrap();
    let t = std::thread::spawn(move || {
        while let Ok(s) = b.recv() {
            b.send(s.to_uppercase()).unwrap();
        }
    });
    a.send("ping".into()).unwrap();
    assert!(a.poll(Some(LONG)).unwrap());
    assert_eq!(a.recv().unwrap(), "PING");
    drop(a);
    t.join().unwrap();

    let (rx, tx) = dummy::pipe_oneway::<u8>().unwrap();
    tx.send_bytes_range(b"hello", 1, Some(3)).unwrap();
    tx.send_bytes(b"").unwrap();
    let mut small = [0u8; 2];
    match rx.recv_bytes_into(&mut small) {
        Err(Error::BufferTooSmall { message, .. }) => assert_eq!(message, b"ell"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv_bytes().unwrap(), b"");
    assert!(!rx.poll(Some(Duration::from_millis(5))).unwrap());
    drop(tx);
    assert!(matches!(rx.recv(), Err(Error::Eof)));
}

#[test]
fn values_and_locks_between_threads() {
    let v = dummy::Value::new(0u64).unwrap();
    let a = dummy::Array::new(4, 0u32).unwrap();
    let l = dummy::Lock::new().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (v, a, l) = (v.clone(), a.clone(), l.clone());
            s.spawn(move || {
                for _ in 0..10_000 {
                    *v.lock().unwrap() += 1;
                }
                let _g = l.acquire().unwrap();
                a.set(t, t as u32 + 1).unwrap();
            });
        }
    });
    assert_eq!(v.get().unwrap(), 40_000);
    assert_eq!(a.to_vec().unwrap(), [1, 2, 3, 4]);
    assert!(a.get(4).is_err());

    let g = l.acquire().unwrap();
    assert!(matches!(
        l.acquire(),
        Err(LockError::Failed(Error::AlreadyHeld))
    ));
    assert!(l.try_acquire().unwrap().is_none());
    drop(g);
    let r = dummy::RLock::new().unwrap();
    let (x, y) = (r.acquire().unwrap(), r.acquire().unwrap());
    drop((x, y));
    let b = dummy::BoundedSemaphore::new(1).unwrap();
    assert!(b.try_acquire());
    assert!(!b.try_acquire());
    b.release().unwrap();
    assert!(matches!(b.release(), Err(Error::ReleasedTooOften { .. })));
    let e = dummy::Event::new().unwrap();
    assert!(!e.wait_timeout(Duration::from_millis(5)).unwrap());
    e.set();
    e.wait().unwrap();
}

#[test]
fn condition_notify_one_and_barrier_between_threads() {
    let c = dummy::Condition::new().unwrap();
    let woke = dummy::Queue::new().unwrap();
    let ready = dummy::Semaphore::new(0).unwrap();
    let hs: Vec<_> = (0..3)
        .map(|i| {
            let (c, woke, ready) = (c.clone(), woke.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut g = c.acquire().unwrap();
                ready.release().unwrap();
                g.wait().unwrap();
                woke.put(&i).unwrap();
            })
        })
        .collect();
    for _ in 0..3 {
        ready.acquire().unwrap();
    }
    // All three released the semaphore while holding the lock, so holding it now means all
    // three are waiting.
    c.acquire().unwrap().notify(1);
    woke.get_timeout(LONG).unwrap();
    assert!(matches!(
        woke.get_timeout(Duration::from_millis(200)),
        Err(Error::Empty)
    ));
    c.acquire().unwrap().notify_all();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(woke.qsize(), 2);

    let b = dummy::Barrier::new(3).unwrap();
    let slots = dummy::Array::new(3, 0u32).unwrap();
    std::thread::scope(|s| {
        for me in 0..3 {
            let (b, slots) = (b.clone(), slots.clone());
            s.spawn(move || {
                for g in 0..200 {
                    slots.set(me, g).unwrap();
                    b.wait().unwrap();
                    assert!(slots.to_vec().unwrap().iter().all(|&x| x == g));
                    b.wait().unwrap();
                }
            });
        }
    });
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(5)),
        Err(Error::BrokenBarrier)
    ));
    b.reset().unwrap();
    assert!(!b.broken());
}

/// Runs the whole method family of a queue type and checks what each returns: the process
/// and thread versions must offer the same methods (this does not compile otherwise) with
/// the same behaviour.
macro_rules! same_queue_api {
    ($make:expr, joinable: $joinable:tt) => {{
        let q = $make;
        let t = Duration::from_millis(1);
        q.put(&1u32).unwrap();
        q.put_timeout(&2, t).unwrap();
        q.put_nowait(&3).unwrap();
        assert!(q.full());
        assert!(matches!(q.put_nowait(&4), Err(Error::Full)));
        assert!(matches!(q.put_timeout(&4, t), Err(Error::Full)));
        assert_eq!(q.qsize(), 3);
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.get_timeout(t).unwrap(), 2);
        assert_eq!(q.get_nowait().unwrap(), 3);
        assert!(q.empty());
        assert!(matches!(q.get_nowait(), Err(Error::Empty)));
        assert!(matches!(q.get_timeout(t), Err(Error::Empty)));
        same_queue_api!(@join q, $joinable);
        assert!(!q.is_closed());
        q.close();
        assert!(q.is_closed());
        assert!(matches!(q.put(&5), Err(Error::Closed)));
        assert!(matches!(q.get(), Err(Error::Closed)));
    }};
    (@join $q:ident, true) => {
        for _ in 0..3 {
            $q.task_done().unwrap();
        }
        assert!($q.task_done().is_err());
        $q.join().unwrap();
        assert!($q.join_timeout(Duration::from_millis(1)).unwrap());
    };
    (@join $q:ident, false) => {};
}

macro_rules! same_simple_queue_api {
    ($make:expr) => {{
        let q = $make;
        q.put(&1u32).unwrap();
        assert!(!q.empty());
        assert_eq!(q.get().unwrap(), 1);
        assert!(q.empty());
        assert!(!q.is_closed());
        q.close();
        assert!(q.is_closed());
        assert!(matches!(q.get(), Err(Error::Closed)));
    }};
}

#[test]
fn process_and_thread_queues_have_the_same_api_and_behaviour() {
    same_queue_api!(multiproc::Queue::with_maxsize(3).unwrap(), joinable: false);
    same_queue_api!(dummy::Queue::with_maxsize(3).unwrap(), joinable: false);
    same_queue_api!(multiproc::JoinableQueue::with_maxsize(3).unwrap(), joinable: true);
    same_queue_api!(dummy::JoinableQueue::with_maxsize(3).unwrap(), joinable: true);
    same_simple_queue_api!(multiproc::SimpleQueue::new().unwrap());
    same_simple_queue_api!(dummy::SimpleQueue::new().unwrap());
}

/// Python's notify-then-wait ping-pong between two threads: every wait is answered.
#[test]
fn condition_ping_pong_between_two_threads_never_loses_a_wake_up() {
    let c = dummy::Condition::new().unwrap();
    let sides: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut g = c.acquire().unwrap();
                for i in 0..100_000 {
                    g.notify(1);
                    assert!(
                        g.wait_timeout(Duration::from_secs(30)).unwrap(),
                        "round {i}: no wake-up came"
                    );
                }
                g.notify(1);
            })
        })
        .collect();
    for s in sides {
        s.join().unwrap();
    }
}

#[test]
fn a_thread_notify_wakes_only_threads_already_waiting() {
    let c = dummy::Condition::new().unwrap();
    {
        let mut g = c.acquire().unwrap();
        g.notify(1);
        assert!(!g.wait_timeout(Duration::from_millis(200)).unwrap());
    }
    let waiting = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let other = {
        let (c, waiting) = (c.clone(), waiting.clone());
        std::thread::spawn(move || {
            let mut g = c.acquire().unwrap();
            waiting.store(1, std::sync::atomic::Ordering::SeqCst);
            g.wait_timeout(LONG).unwrap()
        })
    };
    loop {
        let mut g = c.acquire().unwrap();
        if waiting.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            g.notify(1);
            assert!(
                !g.wait_timeout(Duration::from_millis(300)).unwrap(),
                "the notifier took its own wake-up"
            );
            break;
        }
        drop(g);
        std::thread::yield_now();
    }
    assert!(other.join().unwrap());
}
