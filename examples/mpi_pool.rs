//! The same `#[pool_task]`s on an MPI cluster: rank 0 runs `main`, every other rank serves.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_pool
//! mpirun -n 4 target/release/examples/mpi_pool              # one machine, 3 worker ranks
//! mpirun --hostfile hosts --map-by ppr:1:node target/release/examples/mpi_pool 8
//! ```
//!
//! The optional argument is `threads_per_worker`: with one rank per node, 8 threads in each
//! cover an 8-core node. Started without `mpirun`, it says how to start it.

use multiproc::prelude::*;

/// A CPU-bound task: counts the primes below `n`, deliberately slowly.
#[pool_task]
fn primes_below(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

#[pool_task]
fn host(_probe: usize) -> (String, u32) {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (name.trim().to_owned(), std::process::id())
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let threads = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let pool = match multiproc::mpi::Pool::builder()
        .threads_per_worker(threads)
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "{} worker ranks × {threads} threads (world of {})",
        pool.processes(),
        multiproc::mpi::world_size()
    );
    let probes = 0..pool.processes() * 4;
    let mut ranks = pool.map_with(host, probes, Opts::new().chunksize(1))?;
    ranks.sort();
    ranks.dedup();
    for (name, pid) in &ranks {
        println!("  a worker rank on {name}, pid {pid}");
    }
    // Uneven work: item k costs about k times item 1.
    let sizes: Vec<u64> = (1..=64).map(|k| k * 200).collect();
    let t = std::time::Instant::now();
    let counts = pool.map_with(primes_below, sizes.clone(), Opts::new().chunksize(4))?;
    println!(
        "primes below 200..12800: {} in total, {:?}",
        counts.iter().sum::<u64>(),
        t.elapsed()
    );
    for (n, c) in sizes.iter().zip(&counts).step_by(16) {
        println!("  below {n}: {c}");
    }
    // Checked against a sieve on rank 0.
    let limit = *sizes.last().unwrap_or(&0) as usize;
    let mut composite = vec![false; limit];
    let mut below = vec![0u64; limit + 1];
    for k in 2..limit {
        below[k + 1] = below[k];
        if !composite[k] {
            below[k + 1] += 1;
            (k * k..limit).step_by(k).for_each(|m| composite[m] = true);
        }
    }
    for (n, c) in sizes.iter().zip(&counts) {
        assert_eq!(*c, below[*n as usize], "primes below {n}");
    }
    Ok(())
}
