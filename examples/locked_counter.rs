//! A counter incremented by several processes, three ways: under the value's own lock, under
//! a separate `Lock`, and with an atomic `RawValue`. Each ends exactly right.
//!
//! `cargo run --release --example locked_counter`

use multiproc::prelude::*;
use multiproc::{Lock, RawValue, Value};

const PROCESSES: u64 = 4;
const PER_PROCESS: u64 = 50_000;

#[pool_task]
fn bump(counter: Value<u64>, lock: Lock, tally: Value<u64>, atomic: RawValue<u64>) {
    for _ in 0..PER_PROCESS {
        // The value's own lock: `with counter.get_lock(): counter.value += 1`.
        *counter.lock().expect("counter lock") += 1;
        atomic.fetch_add(1);
    }
    // A separate Lock guarding a read-modify-write made of several steps.
    let _held = lock.acquire().expect("lock");
    let seen = tally.get().expect("tally");
    tally.set(seen + PER_PROCESS).expect("tally");
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let counter = Value::new(0u64)?;
    let tally = Value::new(0u64)?;
    let atomic = RawValue::new(0u64)?;
    let lock = Lock::new()?;
    let started = std::time::Instant::now();
    let ps: Vec<Process> = (0..PROCESSES)
        .map(|_| {
            Process::spawn(
                bump,
                (counter.clone(), lock.clone(), tally.clone(), atomic.clone()),
            )
        })
        .collect::<multiproc::Result<_>>()?;
    for p in &ps {
        assert!(p.join()?.success());
    }
    let total = PROCESSES * PER_PROCESS;
    assert_eq!(counter.get()?, total);
    assert_eq!(tally.get()?, total);
    assert_eq!(atomic.load(), total);
    println!(
        "{PROCESSES} processes x {PER_PROCESS} increments = {} (locked), {} (atomic), in {:?}",
        counter.get()?,
        atomic.load(),
        started.elapsed()
    );
    Ok(())
}
