//! The chaos suite: the library attacked while it works, every scenario bounded in time and
//! sized for a loaded 2-core machine. Workers are SIGKILLed, SIGSTOPped and aborted at random
//! moments during maps and imaps; producers are killed while queue traffic flows; lock holders
//! are killed inside the lock; the parent is killed while it sets things up; pools and
//! one-task workers churn by the hundred. After each: every item is either answered or failed
//! cleanly, none ran more often than its retry policy allows, and nothing leaked.
//!
//! Random choices come from a seed printed at the start of each scenario; `CHAOS_SEED=n`
//! replays one. Scenarios run one at a time (they count process-wide resources).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc::{Array, LockError, Process, RawValue, StartMethod};

const LONG: Duration = Duration::from_secs(120);

/// One scenario at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A small, seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(scenario: &str) -> Rng {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                t ^ u64::from(std::process::id()) << 32
            });
        eprintln!("chaos {scenario}: CHAOS_SEED={seed}");
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: a plain syscall; a pid that is gone by now is harmless (ESRCH).
    unsafe { libc::kill(pid as i32, sig) };
}

/// Sends `sig` to a random pid from `pids()` every 5–25 ms (the pace of the attack, not a
/// synchronization), at most `max` times, until `stop`. Returns how many it sent.
fn attack(
    mut rng: Rng,
    pids: impl Fn() -> Vec<u32> + Send + 'static,
    sig: i32,
    max: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        while sent < max && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5 + rng.below(20)));
            let pids = pids();
            if pids.is_empty() {
                continue;
            }
            signal(pids[rng.below(pids.len() as u64) as usize], sig);
            sent += 1;
        }
        sent
    })
}

fn relock<G>(r: std::result::Result<G, LockError<G>>) -> G {
    match r {
        Ok(g) => g,
        Err(LockError::OwnerDied(g)) => g,
        Err(LockError::Failed(e)) => panic!("lock failed: {e}"),
    }
}

// --- random kills during maps --------------------------------------------------------------

/// Per item: how many runs started, how many finished. Installed by the initializer.
static COUNTS: OnceLock<(Array<u32>, Array<u32>)> = OnceLock::new();

#[pool_task]
fn install_counts(starts: Array<u32>, dones: Array<u32>) {
    let _ = COUNTS.set((starts, dones));
}

/// Item `i` of a run: counts its start and end around a little work. Items listed as
/// poison abort their worker every time.
#[pool_task]
fn tracked(job: (u32, Vec<u32>)) -> u64 {
    let (i, poison) = job;
    let (starts, dones) = COUNTS.get().expect("initializer ran");
    relock(starts.lock())[i as usize] += 1;
    if poison.contains(&i) {
        std::process::abort();
    }
    let until = Instant::now() + Duration::from_micros(1500);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    relock(dones.lock())[i as usize] += 1;
    u64::from(i) * 3
}

/// Checks one item's outcome against its counts: a value is right; a failure is a worker
/// lost as many times as the policy allows; the runs killed while running (started, not
/// finished) are within the policy.
fn check_item(i: u32, r: &multiproc::Result<u64>, starts: u32, dones: u32, retries: u32) {
    let killed = starts - dones;
    match r {
        Ok(v) => {
            assert_eq!(*v, u64::from(i) * 3, "item {i}");
            assert!(dones >= 1, "item {i} answered without finishing");
            assert!(
                killed <= retries,
                "item {i}: {killed} runs killed, {retries} retries"
            );
        }
        Err(Error::WorkerLost { attempts, .. }) => {
            assert_eq!(*attempts, retries + 1, "item {i}");
            assert!(killed <= retries + 1, "item {i}: {killed} runs killed");
        }
        Err(e) => panic!("item {i}: unexpected {e}"),
    }
}

#[multiproc::test]
fn maps_under_random_kills_answer_every_item_within_the_retry_policy() {
    let _serial = serial();
    const N: u32 = 300;
    const RETRIES: u32 = 6;
    let rng = Rng::new("random kills");
    let poison = vec![41, 222];
    for (round, method) in [StartMethod::Spawn, StartMethod::ForkServer]
        .into_iter()
        .enumerate()
    {
        let starts = Array::new(N as usize * 2, 0u32).unwrap();
        let dones = Array::new(N as usize * 2, 0u32).unwrap();
        let pool = Arc::new(
            Pool::builder()
                .processes(3)
                .start_method(method)
                .retries(RETRIES)
                .initializer(install_counts, (starts.clone(), dones.clone()))
                .build()
                .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let p = pool.clone();
        let killer = attack(
            Rng(rng.0 ^ (round as u64 + 1)),
            move || p.pids(),
            libc::SIGKILL,
            40,
            stop.clone(),
        );
        // A map: all results, or the first failure in input order (a poison item here).
        let r = pool.map_with(
            tracked,
            (0..N).map(|i| (i, poison.clone())),
            Opts::new().chunksize(7),
        );
        match r {
            Err(Error::WorkerLost { attempts, .. }) => assert_eq!(attempts, RETRIES + 1),
            other => panic!("{method:?}: expected the poison item's WorkerLost, got {other:?}"),
        }
        // An imap, one outcome per item.
        let got: Vec<multiproc::Result<u64>> = pool
            .imap_with(
                tracked,
                (N..2 * N).map(|i| (i, poison.iter().map(|p| p + N).collect::<Vec<_>>())),
                Opts::new().chunksize(3),
            )
            .unwrap()
            .collect();
        stop.store(true, Ordering::SeqCst);
        let kills = killer.join().unwrap();
        let (starts, dones) = (
            relock(starts.lock()).to_vec(),
            relock(dones.lock()).to_vec(),
        );
        assert_eq!(got.len(), N as usize);
        for (k, r) in got.iter().enumerate() {
            let i = N + k as u32;
            let at = i as usize;
            check_item(i, r, starts[at], dones[at], RETRIES);
            if poison.contains(&(k as u32)) {
                assert!(r.is_err(), "poison item {i} answered");
                // Each of its runs takes a worker down; a random kill landing after it was
                // claimed but before its first line ran uses up an attempt too.
                assert!(
                    (1..=RETRIES + 1).contains(&starts[at]),
                    "poison item {i} ran {} times, its policy allows {}",
                    starts[at],
                    RETRIES + 1
                );
            }
        }
        // The map's items too: each ran, none was killed more often than allowed.
        for i in 0..N as usize {
            assert!(starts[i] - dones[i] <= RETRIES + 1, "map item {i}");
        }
        eprintln!("{method:?}: {kills} workers killed, every item accounted for");
        assert_eq!(pool.apply(tracked, ((0, vec![]),)).unwrap(), 0);
    }
}

// --- stopped workers ---------------------------------------------------------------------

/// Item `i`, after `ms` milliseconds of sleep; tells its pid.
#[pool_task]
fn nap(job: (u32, u64)) -> (u32, u32) {
    let (i, ms) = job;
    std::thread::sleep(Duration::from_millis(ms));
    (i, std::process::id())
}

#[multiproc::test]
fn a_stopped_worker_holds_up_at_most_its_own_item() {
    let _serial = serial();
    let mut rng = Rng::new("SIGSTOP");
    let n = 40u32;
    for kill_after in [None, Some(Duration::from_millis(500))] {
        let mut b = Pool::builder().processes(2);
        if let Some(limit) = kill_after {
            b = b.kill_after(limit);
        }
        let pool = b.build().unwrap();
        let mut it = pool.imap_unordered(nap, (0..n).map(|i| (i, 5))).unwrap();
        let next = |it: &mut multiproc::Imap<'_, (u32, u32)>| {
            it.next_timeout(LONG).map(|r| match r {
                Err(Error::Timeout) => panic!("no answer within {LONG:?}: work is stranded"),
                other => other,
            })
        };
        // Stop a worker that has answered, after a random number of answers.
        let mut got = vec![next(&mut it).unwrap()];
        for _ in 0..rng.below(10) {
            got.push(next(&mut it).unwrap());
        }
        let victim = got[0].as_ref().unwrap().1;
        signal(victim, libc::SIGSTOP);
        match kill_after {
            // Its running item, if any, is killed with it; everything else runs elsewhere.
            Some(_) => {
                while let Some(r) = next(&mut it) {
                    got.push(r);
                }
                signal(victim, libc::SIGCONT); // if it was stopped between jobs
            }
            // Nothing kills it: all but its running item complete elsewhere meanwhile.
            None => {
                while got.len() < n as usize - 1 {
                    got.push(next(&mut it).expect("items went missing"));
                }
                signal(victim, libc::SIGCONT);
                while let Some(r) = next(&mut it) {
                    got.push(r);
                }
            }
        }
        assert_eq!(got.len(), n as usize);
        let failed: Vec<&multiproc::Result<(u32, u32)>> =
            got.iter().filter(|r| r.is_err()).collect();
        match kill_after {
            Some(_) => {
                assert!(failed.len() <= 1, "{failed:?}");
                if let Some(f) = failed.first() {
                    assert!(matches!(f, Err(Error::TaskTimedOut { .. })), "{f:?}");
                    assert!(
                        common::wait_exit(victim, LONG),
                        "the stopped worker lives on"
                    );
                }
            }
            None => assert!(failed.is_empty(), "{failed:?}"),
        }
        let answered: HashSet<u32> = got
            .iter()
            .filter_map(|r| Some(r.as_ref().ok()?.0))
            .collect();
        assert_eq!(
            answered.len() + failed.len(),
            n as usize,
            "an item answered twice"
        );
        assert_eq!(pool.apply(nap, ((7, 0),)).unwrap().0, 7);
    }
}

// --- hostile tasks ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Hostile {
    Fine,
    Hang,
    Abort,
    Exit,
    Exhaust,
    Panic,
}

#[pool_task]
fn misbehave(job: (u32, Hostile)) -> u32 {
    match job.1 {
        Hostile::Fine => {}
        Hostile::Hang => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Hostile::Abort => std::process::abort(),
        Hostile::Exit => std::process::exit(7),
        Hostile::Exhaust => {
            // Reserved, not touched: the address-space limit stops it long before the
            // machine's memory could, and fast.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(Vec::with_capacity(64 << 20));
                std::hint::black_box(&mut hoard);
            }
        }
        Hostile::Panic => panic!("hostile"),
    }
    job.0
}

#[multiproc::test]
fn hostile_tasks_fail_alone_each_with_its_own_error() {
    let _serial = serial();
    let mut rng = Rng::new("hostile tasks");
    const RETRIES: u32 = 1;
    let pool = Pool::builder()
        .processes(2)
        .kill_after(Duration::from_secs(1))
        .retries(RETRIES)
        .worker_memory_limit(256 << 20)
        .build()
        .unwrap();
    let kinds = [
        Hostile::Hang,
        Hostile::Abort,
        Hostile::Exit,
        Hostile::Exhaust,
        Hostile::Panic,
    ];
    let mut items: Vec<(u32, Hostile)> = (0..60).map(|i| (i, Hostile::Fine)).collect();
    for kind in kinds {
        let at = rng.below(items.len() as u64) as usize;
        items.insert(at, (1000, kind));
    }
    for chunksize in [1, 4] {
        let got: Vec<multiproc::Result<u32>> = pool
            .imap_with(misbehave, items.clone(), Opts::new().chunksize(chunksize))
            .unwrap()
            .collect();
        assert_eq!(got.len(), items.len());
        for ((i, kind), r) in items.iter().zip(&got) {
            let lost = |r: &multiproc::Result<u32>, sig: Option<i32>, code: Option<i32>| {
                matches!(r, Err(Error::WorkerLost { signal, exit_code, attempts, .. })
                    if *signal == sig && *exit_code == code && *attempts == RETRIES + 1)
            };
            let ok = match kind {
                Hostile::Fine => r.as_ref().ok() == Some(i),
                Hostile::Hang => matches!(r, Err(Error::TaskTimedOut { .. })),
                Hostile::Abort | Hostile::Exhaust => lost(r, Some(libc::SIGABRT), None),
                Hostile::Exit => lost(r, None, Some(7)),
                Hostile::Panic => matches!(r, Err(Error::TaskPanicked { .. })),
            };
            assert!(ok, "chunksize {chunksize}, {kind:?} item {i}: {r:?}");
        }
    }
    // The pool-wide limit bounds the drop of a pool left running a task that never returns.
    let stuck = pool.apply_async(misbehave, ((0, Hostile::Hang),)).unwrap();
    drop(pool);
    assert!(matches!(stuck.get(), Err(Error::TaskTimedOut { .. })));
}

// --- queue traffic with producers killed -----------------------------------------------------

/// Puts `(who, 0..)` until killed, publishing after each put how many have returned.
#[pool_task]
fn produce_until_killed(q: Queue<(u32, u32)>, who: u32, published: RawValue<u32>) {
    for k in 0.. {
        q.put(&(who, k)).unwrap();
        published.store(k + 1);
    }
}

#[multiproc::test]
fn items_put_by_killed_producers_arrive_once_in_order() {
    let _serial = serial();
    let mut rng = Rng::new("queue producers");
    let q: Queue<(u32, u32)> = Queue::new().unwrap();
    let producers: Vec<(Process, RawValue<u32>)> = (0..3)
        .map(|who| {
            let published = RawValue::new(0u32).unwrap();
            let p =
                Process::spawn(produce_until_killed, (q.clone(), who, published.clone())).unwrap();
            (p, published)
        })
        .collect();
    let mut got: Vec<Vec<u32>> = vec![Vec::new(); 3];
    let mut take = |item: (u32, u32)| got[item.0 as usize].push(item.1);
    // Consume while killing the producers one by one at random moments.
    for (p, _) in &producers {
        let until = Instant::now() + Duration::from_millis(50 + rng.below(300));
        while Instant::now() < until {
            if let Ok(item) = q.get_timeout(Duration::from_millis(10)) {
                take(item);
            }
        }
        p.kill().unwrap();
        assert!(
            p.join_timeout(LONG).unwrap().is_some(),
            "a killed producer lives"
        );
    }
    // Everything put before the kills is there.
    loop {
        match q.get_nowait() {
            Ok(item) => take(item),
            Err(Error::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for (who, (_, published)) in producers.iter().enumerate() {
        let published = published.load();
        let seen = &got[who];
        let expected: Vec<u32> = (0..seen.len() as u32).collect();
        assert_eq!(
            seen, &expected,
            "producer {who}: lost, duplicated or reordered items"
        );
        // Every put that returned is delivered; one in progress at the kill may be too.
        let n = seen.len() as u32;
        assert!(
            n == published || n == published + 1,
            "producer {who}: {n} of {published}"
        );
        assert!(published > 0, "producer {who} never put anything");
    }
}

// --- lock holders killed inside the lock -----------------------------------------------------

/// Increments both counters under the lock, with a window between them, `rounds` times;
/// repairs what a holder killed inside the window left (`repairs`).
#[pool_task]
fn hold_and_count(pair: Array<u64>, rounds: u32, repairs: RawValue<u32>) {
    for _ in 0..rounds {
        let mut g = match pair.lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
                g[1] = g[0];
                repairs.fetch_add(1);
                g
            }
            Err(LockError::Failed(e)) => panic!("{e}"),
        };
        g[0] += 1;
        let until = Instant::now() + Duration::from_micros(300);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        g[1] += 1;
    }
}

#[multiproc::test]
fn lock_holders_killed_inside_the_lock_leave_it_repairable() {
    let _serial = serial();
    let rng = Rng::new("lock holders");
    let pair = Array::new(2, 0u64).unwrap();
    let repairs = RawValue::new(0u32).unwrap();
    let rounds = 400;
    let holders: Vec<Process> = (0..4)
        .map(|_| Process::spawn(hold_and_count, (pair.clone(), rounds, repairs.clone())).unwrap())
        .collect();
    let pids: Vec<u32> = holders.iter().filter_map(Process::pid).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Kill three of the four, at random moments; the last one always finishes.
    let victims = pids[..3].to_vec();
    let killer = {
        let left = Arc::new(Mutex::new(victims));
        attack(
            rng,
            move || {
                let mut left = left.lock().unwrap();
                let pid = left.pop();
                pid.into_iter().collect()
            },
            libc::SIGKILL,
            3,
            stop.clone(),
        )
    };
    let last = holders[3].join_timeout(LONG).unwrap();
    assert_eq!(
        last.map(|s| s.code()),
        Some(0),
        "the survivor did not finish"
    );
    stop.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    for h in &holders[..3] {
        assert!(h.join_timeout(LONG).unwrap().is_some());
    }
    let mut g = relock(pair.lock());
    if g[0] != g[1] {
        g[1] = g[0]; // the last holder to die left it half-done: this is the repair
    }
    assert!(g[0] >= u64::from(rounds), "{} increments", g[0]);
    drop(g);
    eprintln!("{} repairs after holders died in the lock", repairs.load());
}

// --- the parent killed while it sets things up -----------------------------------------------

#[pool_task]
fn double(x: u64) -> u64 {
    x * 2
}

/// What a program does at its start, over and over, until killed: a pool (with `method`)
/// and a map, a queue, a named shared-memory block, a manager with a dict, a child process.
/// `step` counts the steps done, so the test can tell how far each run got.
#[pool_task]
fn set_up_until_killed(method: StartMethod, step: RawValue<u32>) {
    loop {
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        step.fetch_add(1);
        assert_eq!(pool.map(double, 0..50u64).unwrap().len(), 50);
        step.fetch_add(1);
        let q: Queue<u32> = Queue::new().unwrap();
        q.put(&1).unwrap();
        let _block = multiproc::SharedMemory::create(1 << 16).unwrap();
        step.fetch_add(1);
        let m = Manager::new().unwrap();
        let d = m.dict::<String, u32>().unwrap();
        d.insert(&"k".to_string(), &1).unwrap();
        step.fetch_add(1);
        let child = Process::spawn(double, (1,)).unwrap();
        child.join().unwrap();
        step.fetch_add(1);
        // Kept alive together for a moment, then all dropped.
        drop((pool, q, m, d));
    }
}

/// Descendants of this process that are not in `known`: reparented orphans, with this
/// process as their subreaper.
fn orphans(known: &HashSet<u32>) -> Vec<u32> {
    common::children_of(std::process::id())
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn shm_entries(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[multiproc::test]
fn a_parent_killed_mid_setup_leaves_no_process_and_no_segment() {
    let _serial = serial();
    let mut rng = Rng::new("parent killed");
    // Orphans of the killed parent come to this process, so that it can see (and reap)
    // every one of them.
    // SAFETY: a plain prctl on this process.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let methods = [StartMethod::Spawn, StartMethod::ForkServer];
    let mut steps_seen = Vec::new();
    for round in 0..8 {
        let method = methods[round % 2];
        let known: HashSet<u32> = common::children_of(std::process::id())
            .into_iter()
            .collect();
        let step = RawValue::new(0u32).unwrap();
        let victim = Process::spawn(set_up_until_killed, (method, step.clone())).unwrap();
        let pid = victim.pid().unwrap();
        // Kill it at a random moment: the first rounds early (inside the first setup),
        // the later ones after some full cycles.
        let wait = Duration::from_millis(rng.below(if round < 4 { 150 } else { 1500 }));
        std::thread::sleep(wait);
        victim.kill().unwrap();
        assert!(victim.join_timeout(LONG).unwrap().is_some());
        steps_seen.push(step.load());
        // Every process it started exits within the bound, and nothing is left in /dev/shm.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = orphans(&known);
            if left.is_empty() {
                break;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "round {round} ({method:?}, killed after {wait:?}): still running: {:?}",
                left.iter().map(|&p| (p, cmdline(p))).collect::<Vec<_>>()
            );
            for p in left {
                if common::wait_exit(p, deadline.saturating_duration_since(now)) {
                    // SAFETY: p is this process's child (reparented); reaping it is ours
                    // to do. An error (someone else reaped it) is fine.
                    unsafe { libc::waitpid(p as i32, std::ptr::null_mut(), 0) };
                }
            }
        }
        let prefix = format!("mp-{pid}-");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !shm_entries(&prefix).is_empty() {
            assert!(
                Instant::now() < deadline,
                "round {round}: left in /dev/shm: {:?}",
                shm_entries(&prefix)
            );
            // The tracker unlinks once it sees its owner's socket close: poll for that.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("steps reached before each kill: {steps_seen:?}");
}

// --- churn -----------------------------------------------------------------------------------

/// The library's threads in this process (it names every one `multiproc-...`; the test
/// harness's own threads, such as the next test's waiting on `serial()`, do not count).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("multiproc"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// What this process holds that churn could leak: descriptors, threads, children (live or
/// zombie), shared-memory names.
fn holdings() -> (Vec<String>, usize, Vec<u32>, Vec<String>) {
    let me = std::process::id();
    (
        common::open_fds(),
        thread_count(),
        common::children_of(me),
        shm_entries(&format!("mp-{me}-")),
    )
}

/// Waits (bounded) until this process holds nothing it did not hold `before` (the fork
/// server exits and slot threads end a moment after the last pool is dropped). Things
/// held before may be gone by now: an earlier scenario's processes finishing.
fn settled(before: &(Vec<String>, usize, Vec<u32>, Vec<String>)) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let within = |now: &[String], then: &[String]| now.iter().all(|x| then.contains(x));
    loop {
        let (fds, threads, children, shm) = holdings();
        if within(&fds, &before.0)
            && threads <= before.1
            && children.iter().all(|c| before.2.contains(c))
            && within(&shm, &before.3)
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[multiproc::test]
fn churn_leaks_no_descriptor_thread_child_or_segment() {
    // One worker process per task.
    const TASKS: u32 = 2000;
    let _serial = serial();
    let mut rng = Rng::new("churn");
    // Warm up whatever is started once per process.
    drop(Pool::new(1).unwrap());
    let before = holdings();
    for i in 0..300 {
        let method = if i % 3 == 0 {
            StartMethod::Spawn
        } else {
            StartMethod::ForkServer
        };
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        match rng.below(4) {
            0 => {} // never used
            1 => assert_eq!(pool.map(double, 0..20u64).unwrap()[19], 38),
            2 => {
                let r = pool.apply_async(double, (i,)).unwrap();
                pool.terminate();
                let _ = r.get(); // answered or failed, never hung
            }
            _ => {
                let _pending = pool.apply_async(nap, ((0, 2),)).unwrap();
            } // dropped with work in flight
        }
    }
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::ForkServer)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let pids: HashSet<u32> = pool
        .imap_unordered(nap, (0..TASKS).map(|i| (i, 0)))
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(
        pids.len(),
        TASKS as usize,
        "a worker ran two tasks under maxtasksperchild(1)"
    );
    drop(pool);
    let after = holdings();
    assert!(
        settled(&before),
        "leaked:\nbefore {before:?}\nafter {after:?}\nnow {:?}",
        holdings()
    );
}
