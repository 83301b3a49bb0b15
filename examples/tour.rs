//! A tour of the API, printing what it does. Asserts every result it prints.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use multiproc::prelude::*;

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

#[pool_task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
fn whoami() -> (u32, String) {
    (std::process::id(), multiproc::current_process().name)
}

/// Aborts its worker process on item 2.
#[pool_task]
fn abort_on(x: u32) -> u32 {
    if x == 2 {
        std::process::abort();
    }
    x
}

/// Never returns for item 1.
#[pool_task]
fn stuck_on(x: u32) -> u32 {
    if x == 1 {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    x
}

#[pool_task]
fn fail_on(x: u32) -> u32 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

/// A child process: doubles numbers from a queue, answers over a pipe, counts under a lock.
#[pool_task]
fn helper(jobs: Queue<u64>, conn: Connection<String>, hits: Value<u64>, done: Event) {
    while let Ok(x) = jobs.get() {
        conn.send(&format!(
            "{} doubled {x} to {}",
            multiproc::current_process().name,
            2 * x
        ))
        .expect("pipe");
        *hits.lock().expect("lock") += 1;
    }
    done.set();
}

/// Runs once per barrier generation, in the last process to arrive.
#[pool_task]
fn generation_done() {}

#[pool_task]
fn meet(barrier: Barrier) -> u32 {
    barrier.wait().expect("barrier")
}

/// Records a word's length in a dict held by a manager.
#[pool_task]
fn note_length(lengths: DictProxy<String, usize>, word: String) {
    lengths.insert(&word, &word.len()).expect("manager");
}

/// A type the manager serves: its state lives in the manager's process.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Tally {
    total: u64,
}

#[managed]
impl Tally {
    fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }
}

/// Takes jobs from a manager queue until it is closed, adding each to the tally under a
/// manager lock.
#[pool_task]
fn drain(jobs: QueueProxy<u64>, lock: LockProxy, tally: TallyProxy) -> u64 {
    let mut mine = 0;
    while let Ok(n) = jobs.get() {
        let _held = lock.acquire().expect("lock");
        tally.add(n).expect("tally");
        mine += 1;
    }
    mine
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    println!(
        "pool of {} workers: pids {:?}",
        pool.processes(),
        pool.pids()
    );

    let refused = pool.map(|x: u64| x + 1, 0..3u64);
    println!("a closure is not a task: {}", refused.as_ref().unwrap_err());
    assert!(matches!(refused, Err(Error::UnregisteredTask { .. })));

    let v = pool.apply(add, (40, 2))?;
    println!("apply(add, (40, 2)) = {v}");
    assert_eq!(v, 42);

    let (worker, name) = pool.apply(whoami, ())?;
    println!(
        "apply ran in process {worker} ({name}), the parent is {}",
        std::process::id()
    );
    assert_ne!(worker, std::process::id());
    assert!(name.starts_with("SpawnPoolWorker-"));

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let r = pool.apply_async_with(
        add,
        (1, 2),
        Opts::new().callback(move |v: &i64| {
            seen.fetch_add(*v as usize, Ordering::SeqCst);
        }),
    )?;
    let v = r.get()?;
    println!("apply_async(add, (1, 2)) = {v}, callback saw it too");
    assert_eq!((v, calls.load(Ordering::SeqCst)), (3, 3));

    let squares = pool.map(square, 0..10u64)?;
    println!("map(square, 0..10) = {squares:?}");
    assert_eq!(squares, (0..10u64).map(|x| x * x).collect::<Vec<_>>());

    let big = pool.map_with(square, 0..100_000u64, Opts::new().chunksize(1000))?;
    assert_eq!(
        big.iter().sum::<u64>(),
        (0..100_000u64).map(|x| x * x).sum::<u64>()
    );
    println!(
        "map of 100,000 items at chunksize 1000: sum {}",
        big.iter().sum::<u64>()
    );

    let sums = pool.starmap(add, vec![(1, 2), (3, 4), (5, 6)])?;
    println!("starmap(add, [(1,2),(3,4),(5,6)]) = {sums:?}");
    assert_eq!(sums, vec![3, 7, 11]);

    let first: Vec<u64> = pool.imap(square, 0..)?.take(5).collect::<Result<_, _>>()?;
    println!("imap(square, 0..) over an endless input, first five: {first:?}");
    assert_eq!(first, vec![0, 1, 4, 9, 16]);

    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..20u64)?
        .collect::<Result<_, _>>()?;
    unordered.sort_unstable();
    println!("imap_unordered(square, 0..20), sorted: {unordered:?}");
    assert_eq!(unordered, (0..20u64).map(|x| x * x).collect::<Vec<_>>());

    let items: Vec<_> = pool.imap(fail_on, 0..5u32)?.collect();
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(v) => println!("  imap(fail_on)[{i}] = {v}"),
            Err(e) => println!("  imap(fail_on)[{i}] failed: {e}"),
        }
    }
    assert!(matches!(&items[3], Err(Error::TaskPanicked { .. })));
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 4);

    // A worker that dies takes only the item it was running with it.
    let items: Vec<_> = pool
        .imap_with(abort_on, 0..5u32, Opts::new().chunksize(5))?
        .collect();
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(v) => println!("  imap(abort_on)[{i}] = {v}"),
            Err(e) => println!("  imap(abort_on)[{i}] failed: {e}"),
        }
    }
    assert!(matches!(&items[2], Err(Error::WorkerLost { .. })));
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 4);

    // kill_after stops a task that runs too long (its worker is replaced); timeout would only
    // stop waiting for it.
    let opts = Opts::new().kill_after(Duration::from_millis(200));
    let items: Vec<_> = pool.imap_with(stuck_on, 0..3u32, opts)?.collect();
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(v) => println!("  imap(stuck_on, kill_after 200 ms)[{i}] = {v}"),
            Err(e) => println!("  imap(stuck_on, kill_after 200 ms)[{i}] failed: {e}"),
        }
    }
    assert!(matches!(&items[1], Err(Error::TaskTimedOut { .. })));
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 2);

    // An imap starts at once; next_timeout waits at most so long for one item.
    let mut it = pool.imap(square, 0..3u64)?;
    let first = it.next_timeout(Duration::from_secs(60));
    println!("imap(square, 0..3).next_timeout(60 s) = {first:?}");
    assert_eq!(first.transpose()?, Some(0));

    let r = pool.map_async(square, 0..1000u64)?;
    assert!(r.wait_timeout(Duration::from_secs(60)));
    println!(
        "map_async ready: {}, successful: {:?}",
        r.ready(),
        r.successful()
    );
    assert_eq!(r.get()?.len(), 1000);

    pool.close();
    println!(
        "after close: {:?}",
        pool.apply(add, (1, 1)).err().map(|e| e.to_string())
    );
    assert!(matches!(pool.apply(add, (1, 1)), Err(Error::PoolClosed)));
    pool.join()?;
    println!("joined the pool");

    // Processes, queues, pipes, shared values, events.
    let jobs = Queue::new()?;
    let (here, there) = multiproc::pipe()?;
    let hits = Value::new(0u64)?;
    let done = Event::new()?;
    let child = Process::new(helper, (jobs.clone(), there, hits.clone(), done.clone()))?
        .with_name("helper");
    child.start()?;
    for x in [1, 2, 3] {
        jobs.put(&x)?;
    }
    for x in [1u64, 2, 3] {
        let line = here.recv()?;
        println!("pipe: {line}");
        assert_eq!(line, format!("helper doubled {x} to {}", 2 * x));
    }
    jobs.close();
    assert!(done.wait_timeout(Duration::from_secs(60))?);
    let status = child.join()?;
    println!(
        "process `{}` (pid {:?}) exited: {status:?}; it counted {} jobs under a lock",
        child.name(),
        child.pid(),
        hits.get()?
    );
    assert!(status.success());
    assert_eq!(hits.get()?, 3);

    // A barrier across pool workers... of two pools of one worker each, so both run at once.
    let barrier = Barrier::with_action(2, generation_done)?;
    let (p1, p2) = (Pool::new(1)?, Pool::new(1)?);
    let a = p1.apply_async(meet, (barrier.clone(),))?;
    let b = p2.apply_async(meet, (barrier.clone(),))?;
    let mut order = [a.get()?, b.get()?];
    order.sort_unstable();
    println!("barrier: two processes met, arrival indices {order:?}");
    assert_eq!(order, [0, 1]);

    let shm = SharedMemory::create(64)?;
    shm.write(0, b"hello")?;
    let mut buf = [0u8; 5];
    SharedMemory::attach(shm.name())?.read(0, &mut buf)?;
    println!(
        "shared memory block `{}`: {:?}",
        shm.name(),
        std::str::from_utf8(&buf)
    );
    assert_eq!(&buf, b"hello");

    // A manager: a server process holding a dict that pool workers update through proxies.
    let manager = Manager::new()?;
    let lengths = manager.dict::<String, usize>()?;
    let words = ["alpha", "beta", "gamma"].map(String::from);
    let pool = Pool::new(2)?;
    pool.starmap(
        note_length,
        words
            .iter()
            .map(|w| (lengths.clone(), w.clone()))
            .collect::<Vec<_>>(),
    )?;
    let mut seen = lengths.items()?;
    seen.sort();
    println!("manager dict filled by the pool: {seen:?}");
    assert_eq!(seen.len(), 3);

    // A manager queue, lock and user type, shared by pool workers.
    let jobs = manager.queue::<u64>()?;
    let lock = manager.lock()?;
    let tally = manager.serve::<Tally>()?;
    for n in 1..=10 {
        jobs.put(&n)?;
    }
    jobs.close()?;
    let taken: Vec<u64> =
        pool.starmap(drain, vec![(jobs.clone(), lock.clone(), tally.clone()); 2])?;
    let total = tally.add(0)?;
    println!("manager queue drained by the pool: {taken:?} jobs each, tally {total}");
    assert_eq!(taken.iter().sum::<u64>(), 10);
    assert_eq!(total, 55);
    println!("the tour is complete");
    Ok(())
}
