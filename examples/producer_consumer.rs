//! Producer/consumer with a `JoinableQueue`: consumers mark each item done, and the producer
//! waits with `join` until every item has been processed.
//!
//! `cargo run --release --example producer_consumer`

use multiproc::prelude::*;

#[pool_task]
fn consumer(jobs: JoinableQueue<u64>, results: Queue<(u32, u64)>) {
    let me = std::process::id();
    loop {
        match jobs.get() {
            Ok(n) => {
                // Some work: the sum of the first n squares.
                let s = (1..=n).map(|k| k * k).sum::<u64>();
                results.put(&(me, s)).expect("results queue");
                jobs.task_done().expect("task_done");
            }
            Err(multiproc::Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let jobs = JoinableQueue::with_maxsize(16)?;
    let results = Queue::new()?;
    let consumers: Vec<Process> = (0..3)
        .map(|_| Process::spawn(consumer, (jobs.clone(), results.clone())))
        .collect::<multiproc::Result<_>>()?;

    // The bounded queue makes the producer wait whenever consumers fall behind.
    for n in 1..=500u64 {
        jobs.put(&n)?;
    }
    jobs.join()?;
    // join returned: every item has been processed, so every result is already queued.
    assert_eq!(results.qsize(), 500);
    jobs.close();
    for c in &consumers {
        assert!(c.join()?.success());
    }

    let mut total = 0u64;
    let mut per_consumer = std::collections::BTreeMap::<u32, usize>::new();
    for _ in 0..500 {
        let (pid, s) = results.get()?;
        total += s;
        *per_consumer.entry(pid).or_default() += 1;
    }
    let expect: u64 = (1..=500u64).map(|n| n * (n + 1) * (2 * n + 1) / 6).sum();
    assert_eq!(total, expect);
    println!(
        "500 jobs done by {} consumers: {per_consumer:?}",
        per_consumer.len()
    );
    println!("sum of all results: {total}");
    Ok(())
}
