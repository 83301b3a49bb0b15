//! `--mpi` (built with `--features mpi`): the MPI pool over 2, 4 and 8 worker ranks against
//! the local process pool with as many workers, and `threads_per_worker` on a CPU-bound map
//! against rayon alone and processes alone, all in the same run. Each MPI figure comes from
//! an `mpirun -n K+1` job on this binary (`--mpi-job K THREADS`), whose rank 0 prints one
//! JSON line; ranks beyond the cores are oversubscribed, as the local workers are.

use std::process::Command;
use std::time::Instant;

use multiproc::prelude::*;
use multiproc::TaskPool;
use rayon::prelude::*;

use super::{Bench, ITEMS};
use crate::common::{add, percentile, square};

/// Items of the CPU-bound map, and the work in each.
const CPU_ITEMS: u64 = 256;
const CPU_WORK: u64 = 30_000;

/// CPU-bound: counts the primes below `n` by trial division (about a millisecond).
#[pool_task]
pub fn primes_below(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// ns per item of a 100k map at the default chunk size.
fn map_ns(pool: &impl TaskPool) -> multiproc::Result<f64> {
    pool.map(square, 0..1000u64)?;
    let t = Instant::now();
    let v = pool.map(square, 0..ITEMS)?;
    assert_eq!(v.len() as u64, ITEMS);
    Ok(t.elapsed().as_secs_f64() * 1e9 / ITEMS as f64)
}

/// Median µs of an apply round trip.
fn apply_p50_us(pool: &impl TaskPool) -> multiproc::Result<f64> {
    for _ in 0..200 {
        pool.apply(add, (1, 2))?;
    }
    let mut lat = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        pool.apply(add, (1, 2))?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(percentile(&mut lat, 0.5))
}

/// ms for the CPU-bound map, chunks of 8.
fn cpu_map_ms(pool: &impl TaskPool) -> multiproc::Result<f64> {
    let t = Instant::now();
    let v = pool.map_with(
        primes_below,
        (0..CPU_ITEMS).map(|_| CPU_WORK),
        Opts::new().chunksize(8),
    )?;
    assert_eq!(v.len() as u64, CPU_ITEMS);
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Rank 0 of an `mpirun` job: measures and prints one JSON line.
pub fn job(workers: usize, threads: usize) -> multiproc::Result<()> {
    let pool = multiproc::mpi::Pool::builder()
        .processes(workers)
        .threads_per_worker(threads)
        .build()?;
    let line = if threads > 1 {
        cpu_map_ms(&pool)?; // warm
        serde_json::json!({ "cpu_ms": cpu_map_ms(&pool)? })
    } else {
        serde_json::json!({ "map_ns": map_ns(&pool)?, "apply_us": apply_p50_us(&pool)? })
    };
    println!("MPI-BENCH {line}");
    Ok(())
}

/// Runs `mpirun -n workers+1` on this binary's `--mpi-job`; its JSON line.
fn mpirun(workers: usize, threads: usize) -> Option<serde_json::Value> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new("mpirun")
        .args(["-n", &(workers + 1).to_string(), "--oversubscribe"])
        // Threads inside a rank need more than the one core Open MPI binds it to by default.
        .args(["--bind-to", "none"])
        .args(["--mca", "btl_vader_single_copy_mechanism", "none"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(exe)
        .args(["--mpi-job", &workers.to_string(), &threads.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("MPI-BENCH "));
    if line.is_none() {
        eprintln!(
            "mpirun -n {}: no result ({}): {}",
            workers + 1,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_str(line?).ok()
}

pub fn round(bench: &mut Bench) -> multiproc::Result<()> {
    for k in [2, 4, 8] {
        let mpi = mpirun(k, 1);
        let local = Pool::new(k)?;
        let map = format!("map 100k, default chunksize, {k} workers (ns/item)");
        let apply = format!("apply round trip p50, {k} workers (µs)");
        bench.record(
            &map,
            "multiproc",
            mpi.as_ref().and_then(|v| v["map_ns"].as_f64()),
        );
        bench.record(
            &apply,
            "multiproc",
            mpi.as_ref().and_then(|v| v["apply_us"].as_f64()),
        );
        bench.record(&map, "local Pool", Some(map_ns(&local)?));
        bench.record(&apply, "local Pool", Some(apply_p50_us(&local)?));
    }
    // threads_per_worker on a CPU-bound map, two cores' worth: one worker with two threads
    // (the row's "multiproc"), against two workers, rayon on two threads, and one MPI rank
    // with two threads.
    let row = format!("CPU-bound map, {CPU_ITEMS} items, 1 worker × 2 threads (ms)");
    let threaded = Pool::builder().processes(1).threads_per_worker(2).build()?;
    cpu_map_ms(&threaded)?;
    bench.record(&row, "multiproc", Some(cpu_map_ms(&threaded)?));
    drop(threaded);
    let two = Pool::new(2)?;
    cpu_map_ms(&two)?;
    bench.record(&row, "processes alone: Pool(2)", Some(cpu_map_ms(&two)?));
    drop(two);
    let rayon2 = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .map_err(|e| multiproc::Error::InvalidArgument(e.to_string()))?;
    let t = Instant::now();
    let n: u64 = rayon2.install(|| {
        (0..CPU_ITEMS)
            .into_par_iter()
            .map(|_| primes_below(CPU_WORK))
            .sum()
    });
    assert!(n > 0);
    bench.record(
        &row,
        "rayon alone (2 threads)",
        Some(t.elapsed().as_secs_f64() * 1e3),
    );
    let mpi = mpirun(1, 2);
    bench.record(
        &row,
        "mpi: 1 rank × 2 threads",
        mpi.and_then(|v| v["cpu_ms"].as_f64()),
    );
    Ok(())
}
