//! Shared values, arrays, raw blocks and cross-process locks, through real processes,
//! mirroring Python's own tests: exact locked counts, lockstep barriers, notify waking
//! exactly one, lock holders killed mid-critical-section, segments gone after owners die.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use multiproc::prelude::*;
use multiproc::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, RawValue, Semaphore,
    Shareable, SharedMemory, Value,
};

const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn locked_increments(v: Value<u64>, n: u32) {
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
}

#[pool_task]
fn atomic_increments(v: RawValue<u64>, n: u32) {
    for _ in 0..n {
        v.fetch_add(1);
    }
}

#[multiproc::test]
fn two_processes_a_hundred_thousand_locked_increments_each() {
    let v = Value::new(0u64).unwrap();
    let raw = RawValue::new(0u64).unwrap();
    let ps: Vec<Process> = (0..2)
        .flat_map(|_| {
            [
                Process::spawn(locked_increments, (v.clone(), 100_000)).unwrap(),
                Process::spawn(atomic_increments, (raw.clone(), 100_000)).unwrap(),
            ]
        })
        .collect();
    for p in ps {
        assert!(p.join().unwrap().success());
    }
    assert_eq!(v.get().unwrap(), 200_000);
    assert_eq!(raw.load(), 200_000);
}

#[derive(Clone, Copy, Debug, PartialEq, Shareable)]
#[repr(C)]
struct Particle {
    pos: [f64; 2],
    alive: bool,
    id: u32,
}

#[pool_task]
fn fill_slice(a: Array<u32>, worker: usize, per: usize) {
    let mut g = a.lock().unwrap();
    for (i, x) in g[worker * per..(worker + 1) * per].iter_mut().enumerate() {
        *x = (worker * per + i) as u32 * 3;
    }
}

#[pool_task]
fn move_particle(v: Value<Particle>) {
    let mut p = v.lock().unwrap();
    p.pos[0] += 1.5;
    p.alive = false;
}

#[multiproc::test]
fn arrays_and_struct_values_written_by_workers() {
    let a = Array::new(400, 0u32).unwrap();
    let pool = Pool::new(3).unwrap();
    let args: Vec<(Array<u32>, usize, usize)> = (0..4).map(|w| (a.clone(), w, 100)).collect();
    pool.starmap(fill_slice, args).unwrap();
    assert_eq!(
        a.to_vec().unwrap(),
        (0..400).map(|i| i * 3).collect::<Vec<u32>>()
    );
    assert_eq!(a.get(399).unwrap(), 1197);
    assert!(matches!(
        a.get(400),
        Err(Error::OutOfRange { len: 400, .. })
    ));

    let v = Value::new(Particle {
        pos: [1.0, 2.0],
        alive: true,
        id: 9,
    })
    .unwrap();
    pool.apply(move_particle, (v.clone(),)).unwrap();
    assert_eq!(
        v.get().unwrap(),
        Particle {
            pos: [2.5, 2.0],
            alive: false,
            id: 9
        }
    );
}

static STEPS: OnceLock<RawValue<u64>> = OnceLock::new();

/// The barrier's action: runs once per generation, in the last party to arrive.
#[pool_task]
fn count_generation() {
    if let Some(s) = STEPS.get() {
        s.fetch_add(1);
    }
}

#[pool_task]
fn lockstep(b: Barrier, slots: Array<u32>, steps: RawValue<u64>, me: usize, gens: u32) {
    let _ = STEPS.set(steps);
    for g in 0..gens {
        slots.set(me, g).unwrap();
        let index = b.wait().unwrap();
        assert!(index < b.parties());
        // Everyone has written generation g before anyone passed the barrier.
        assert!(
            slots.to_vec().unwrap().iter().all(|&s| s == g),
            "generation {g}"
        );
        b.wait().unwrap();
    }
}

#[multiproc::test]
fn a_barrier_holds_lockstep_for_a_thousand_generations() {
    const PARTIES: usize = 3;
    let b = Barrier::with_action(PARTIES as u32, count_generation).unwrap();
    let slots = Array::new(PARTIES, 0u32).unwrap();
    let steps = RawValue::new(0u64).unwrap();
    // Processes, not pool tasks: all parties must run at once.
    let ps: Vec<Process> = (0..PARTIES)
        .map(|me| {
            Process::spawn(
                lockstep,
                (b.clone(), slots.clone(), steps.clone(), me, 1000u32),
            )
            .unwrap()
        })
        .collect();
    for p in ps {
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    }
    // Two waits per generation, one action each.
    assert_eq!(steps.load(), 2000);
    assert!(!b.broken());
}

#[multiproc::test]
fn barrier_timeout_abort_and_reset() {
    let b = Barrier::new(2).unwrap();
    assert_eq!(b.parties(), 2);
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(20)),
        Err(Error::BrokenBarrier)
    ));
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset().unwrap();
    assert!(!b.broken());
    let single = Barrier::new(1).unwrap();
    assert_eq!(single.wait().unwrap(), 0);
    single.abort();
    assert!(matches!(single.wait(), Err(Error::BrokenBarrier)));
}

#[pool_task]
fn wait_on(c: Condition, waiting: RawValue<u32>, woke: Queue<u32>) {
    let mut g = c.acquire().unwrap();
    waiting.fetch_add(1);
    g.wait().unwrap();
    woke.put(&std::process::id()).unwrap();
}

#[multiproc::test]
fn notify_wakes_exactly_one_of_several_waiting_processes() {
    let c = Condition::new().unwrap();
    let waiting = RawValue::new(0u32).unwrap();
    let woke = Queue::new().unwrap();
    let ps: Vec<Process> = (0..3)
        .map(|_| Process::spawn(wait_on, (c.clone(), waiting.clone(), woke.clone())).unwrap())
        .collect();
    // Once we hold the lock with all three counted, all three are inside wait().
    loop {
        let g = c.acquire().unwrap();
        if waiting.load() == 3 {
            g.notify(1);
            break;
        }
        drop(g);
        std::thread::yield_now();
    }
    woke.get_timeout(LONG).unwrap();
    assert!(matches!(
        woke.get_timeout(Duration::from_millis(300)),
        Err(Error::Empty)
    ));
    c.acquire().unwrap().notify_all();
    woke.get_timeout(LONG).unwrap();
    woke.get_timeout(LONG).unwrap();
    for p in ps {
        assert!(p.join().unwrap().success());
    }
}

#[multiproc::test]
fn condition_wait_for_and_timeouts() {
    let c = Condition::new().unwrap();
    let mut g = c.acquire().unwrap();
    assert!(!g.wait_timeout(Duration::from_millis(10)).unwrap());
    // A predicate already true returns at once, even without a timeout.
    assert!(g.wait_for(|| true, None).unwrap());
    assert!(!g
        .wait_for(|| false, Some(Duration::from_millis(10)))
        .unwrap());
}

/// Takes every kind of lock, leaves the array half-updated (the invariant is `a[0] == a[1]`)
/// and dies holding them all.
#[pool_task]
fn die_mid_update(l: Lock, r: RLock, v: Value<u32>, a: Array<u32>, c: Condition, held: Event) {
    let _l = l.acquire().unwrap();
    let _r = r.acquire().unwrap();
    let _r2 = r.acquire().unwrap();
    let _v = v.lock().unwrap();
    let _c = c.acquire().unwrap();
    let mut a = a.lock().unwrap();
    a[0] = 999;
    held.set();
    // SAFETY: a plain syscall on our own process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[multiproc::test]
fn the_next_holder_of_a_dead_holders_lock_gets_the_guard_and_repairs_the_data() {
    let (l, r) = (Lock::new().unwrap(), RLock::new().unwrap());
    let v = Value::new(5u32).unwrap();
    let a = Array::from_slice(&[5u32, 5]).unwrap();
    let c = Condition::new().unwrap();
    let held = Event::new().unwrap();
    let args = (
        l.clone(),
        r.clone(),
        v.clone(),
        a.clone(),
        c.clone(),
        held.clone(),
    );
    let p = Process::spawn(die_mid_update, args).unwrap();
    assert!(held.wait_timeout(LONG).unwrap());
    assert_eq!(p.join().unwrap(), ExitStatus::Signal(9));

    // The array: the guard comes with the error, and shows the half-done update.
    match a.lock() {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(g[..], [999, 5]);
            g[1] = g[0]; // finish the update the dead process began
        }
        other => panic!("expected OwnerDied with the guard, got {other:?}"),
    }
    assert_eq!(a.to_vec().unwrap(), [999, 999]);
    // The value: repaired through its guard, written back when it drops.
    match v.lock_timeout(LONG) {
        Err(LockError::OwnerDied(mut g)) => *g = 6,
        other => panic!("expected OwnerDied with the guard, got {other:?}"),
    }
    assert_eq!(v.get().unwrap(), 6);
    // The locks: held by the new owner until the guard drops, then free and clean.
    for (name, died) in [
        (
            "Lock",
            l.acquire_timeout(LONG)
                .map(|_| ())
                .map_err(|e| e.into_guard().is_some()),
        ),
        (
            "RLock",
            r.acquire()
                .map(|_| ())
                .map_err(|e| e.into_guard().is_some()),
        ),
        (
            "Condition",
            c.acquire()
                .map(|_| ())
                .map_err(|e| e.into_guard().is_some()),
        ),
    ] {
        assert_eq!(died, Err(true), "{name}");
    }
    assert!(l.try_acquire().unwrap().is_some());
    assert!(r.try_acquire().unwrap().is_some());
    assert!(c.acquire_timeout(LONG).unwrap().is_some());
    // Through `?`, a taken-over lock is `Error::OwnerDied` and is released.
    let p = Process::spawn(die_mid_update, (l.clone(), r, v, a, c, held)).unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Signal(9));
    let plain: multiproc::Result<()> = (|| {
        let _g = l.acquire()?;
        Ok(())
    })();
    assert!(matches!(plain, Err(Error::OwnerDied)));
    assert!(l.try_acquire().unwrap().is_some());
}

#[multiproc::test]
fn misuse_is_an_error_not_a_deadlock() {
    let l = Lock::new().unwrap();
    let g = l.acquire().unwrap();
    assert!(matches!(
        l.acquire(),
        Err(LockError::Failed(Error::AlreadyHeld))
    ));
    assert!(matches!(
        l.acquire_timeout(Duration::from_millis(5)),
        Err(LockError::Failed(Error::AlreadyHeld))
    ));
    drop(g);
    let r = RLock::new().unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    drop((a, b));
    let s = BoundedSemaphore::new(1).unwrap();
    s.acquire().unwrap();
    s.release().unwrap();
    assert!(matches!(s.release(), Err(Error::ReleasedTooOften { .. })));
    assert!(BoundedSemaphore::new(0).is_err());
}

#[pool_task]
fn limited(s: Semaphore, inside: RawValue<u32>, most: RawValue<u32>) {
    for _ in 0..200 {
        let _g = s.guard().unwrap();
        let now = inside.fetch_add(1) + 1;
        let mut m = most.load();
        while now > m {
            match most.compare_exchange(m, now) {
                Ok(_) => break,
                Err(x) => m = x,
            }
        }
        std::hint::spin_loop();
        inside.fetch_sub(1);
    }
}

#[multiproc::test]
fn semaphores_bound_concurrency_across_processes() {
    let s = Semaphore::new(2).unwrap();
    let inside = RawValue::new(0u32).unwrap();
    let most = RawValue::new(0u32).unwrap();
    let ps: Vec<Process> = (0..4)
        .map(|_| Process::spawn(limited, (s.clone(), inside.clone(), most.clone())).unwrap())
        .collect();
    for p in ps {
        assert!(p.join().unwrap().success());
    }
    assert!(most.load() <= 2 && most.load() >= 1);
    assert_eq!(s.value(), 2);
    assert!(s.try_acquire());
    assert!(s.try_acquire());
    assert!(!s.try_acquire());
    assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
}

#[pool_task]
fn set_later(e: Event, go: Event) {
    go.wait().unwrap();
    e.set();
}

#[multiproc::test]
fn events_cross_processes() {
    let e = Event::new().unwrap();
    let go = Event::new().unwrap();
    assert!(!e.wait_timeout(Duration::from_millis(5)).unwrap());
    let p = Process::spawn(set_later, (e.clone(), go.clone())).unwrap();
    go.set();
    e.wait().unwrap();
    assert!(e.is_set());
    e.clear();
    assert!(!e.is_set());
    p.join().unwrap();
}

fn shm_names(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[pool_task]
fn write_block(block: SharedMemory, at: usize, bytes: Vec<u8>) {
    block.write(at, &bytes).unwrap();
}

#[multiproc::test]
fn shared_memory_blocks_by_name() {
    let name = format!("mp-test-{}-a", std::process::id());
    let block = SharedMemory::create_named(&name, 1000).unwrap();
    assert!(block.is_owner());
    let meta = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(matches!(
        SharedMemory::create_named(&name, 10),
        Err(Error::SegmentExists { .. })
    ));
    assert!(matches!(
        SharedMemory::attach("mp-test-no-such-block"),
        Err(Error::SegmentNotFound { .. })
    ));
    Process::spawn(write_block, (block.clone(), 10, vec![1, 2, 3]))
        .unwrap()
        .join()
        .unwrap();
    let other = SharedMemory::attach(&name).unwrap();
    assert!(!other.is_owner());
    let mut buf = [0u8; 5];
    other.read(9, &mut buf).unwrap();
    assert_eq!(buf, [0, 1, 2, 3, 0]);
    assert!(other.read(998, &mut buf).is_err());
    drop(other); // not the owner: the name stays
    assert_eq!(shm_names(&name).len(), 1);
    drop(block);
    assert!(shm_names(&name).is_empty());
}

#[pool_task]
fn create_and_die(name: String, ready: Event) {
    let block = SharedMemory::create_named(&name, 4096).unwrap();
    std::mem::forget(block);
    ready.set();
    // SAFETY: a plain syscall on our own process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[multiproc::test]
fn blocks_of_a_killed_owner_are_unlinked() {
    let name = format!("mp-test-{}-killed", std::process::id());
    let ready = Event::new().unwrap();
    let p = Process::spawn(create_and_die, (name.clone(), ready.clone())).unwrap();
    assert!(ready.wait_timeout(LONG).unwrap());
    assert_eq!(p.join().unwrap(), ExitStatus::Signal(9));
    let deadline = std::time::Instant::now() + LONG;
    while !shm_names(&name).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} left behind in /dev/shm"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Python's ping-pong: each side notifies, then waits; the other's notify wakes it. Panics
/// (exit code 1) if a wait ever times out: a lost or stolen wake-up.
#[pool_task]
fn ping_pong(c: Condition, rounds: u32) {
    let mut g = c.acquire().unwrap();
    for i in 0..rounds {
        g.notify(1);
        assert!(
            g.wait_timeout(Duration::from_secs(30)).unwrap(),
            "round {i}: no wake-up came"
        );
    }
    g.notify(1);
}

#[multiproc::test]
fn condition_ping_pong_between_two_processes_never_loses_a_wake_up() {
    let c = Condition::new().unwrap();
    let ps: Vec<Process> = (0..2)
        .map(|_| Process::spawn(ping_pong, (c.clone(), 100_000)).unwrap())
        .collect();
    for p in ps {
        assert_eq!(p.join_timeout(LONG).unwrap(), Some(ExitStatus::Code(0)));
    }
}

#[pool_task]
fn wait_once(c: Condition, waiting: RawValue<u32>, woke: Queue<bool>) {
    let mut g = c.acquire().unwrap();
    waiting.fetch_add(1);
    woke.put(&g.wait_timeout(LONG).unwrap()).unwrap();
}

#[multiproc::test]
fn a_notify_wakes_only_processes_already_waiting() {
    let c = Condition::new().unwrap();
    // Nobody waits: the notify is lost, as in Python; a later waiter does not consume it.
    {
        let mut g = c.acquire().unwrap();
        g.notify(1);
        assert!(!g.wait_timeout(Duration::from_millis(200)).unwrap());
    }
    // One process waits; we notify once and then wait ourselves: the notify is the other
    // process's, so our own wait times out and the other process wakes.
    let waiting = RawValue::new(0u32).unwrap();
    let woke = Queue::new().unwrap();
    let p = Process::spawn(wait_once, (c.clone(), waiting.clone(), woke.clone())).unwrap();
    loop {
        let mut g = c.acquire().unwrap();
        if waiting.load() == 1 {
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
    assert!(woke.get_timeout(LONG).unwrap());
    assert!(p.join().unwrap().success());
}

#[pool_task]
fn write_strings(l: multiproc::ShareableList, slot: i64, rounds: u32) {
    // Each write a whole value of its own: a reader must never see a mix of two.
    for r in 0..rounds {
        let s = if r % 2 == 0 { "aaaaaaaa" } else { "bbbbbbbb" };
        l.set(slot, s).unwrap();
    }
    l.set(slot, format!("done{slot}")).unwrap();
}

#[multiproc::test]
fn a_shareable_list_is_written_by_processes_and_never_read_half_written() {
    use multiproc::{ShareableItem, ShareableList};
    let l =
        ShareableList::new(["--------".into(), "--------".into(), ShareableItem::Int(0)]).unwrap();
    let ps: Vec<Process> = (0..2)
        .map(|slot| Process::spawn(write_strings, (l.clone(), slot, 2000)).unwrap())
        .collect();
    let mut seen = 0u64;
    loop {
        let running = ps.iter().any(|p| p.is_alive());
        for slot in 0..2 {
            match l.get(slot).unwrap() {
                ShareableItem::Str(s) => {
                    assert!(
                        ["--------", "aaaaaaaa", "bbbbbbbb", "done0", "done1"].contains(&&*s),
                        "torn read: {s:?}"
                    );
                    seen += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        if !running {
            break;
        }
    }
    for p in ps {
        assert!(p.join_timeout(LONG).unwrap().unwrap().success());
    }
    assert!(seen > 0);
    assert_eq!(l.get(0).unwrap(), "done0".into());
    assert_eq!(l.get(1).unwrap(), "done1".into());
    // Attached by name elsewhere, it is the same list.
    let by_name = ShareableList::attach(l.name()).unwrap();
    by_name.set(2, 42i64).unwrap();
    assert_eq!(l.get(2).unwrap(), ShareableItem::Int(42));
}
