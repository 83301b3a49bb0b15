//! One scenario in a loop, for profilers: `perf record -g -- target/release/hot queue_big`.
//!
//! Scenarios: `apply` (apply_async round trips), `map1` (map at chunksize 1), `imap1` (imap
//! at chunksize 1), `queue_big` (1 MiB items from a child), `queue_small`, `cpu` (the
//! speedup of 10 ms tasks from 1 worker to all), `rss` (idle worker memory after work;
//! `HOT_FORKSERVER=1` for workers forked from the fork server), `uneven` (the
//! mixed-duration scenarios, as makespan over the ideal one). Each runs for `--secs N`
//! (default 5) and prints its rate.

use std::time::{Duration, Instant};

use multiproc::prelude::*;

#[path = "../common.rs"]
mod common;
use common::*;

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("apply", String::as_str);
    let secs: u64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    let until = Instant::now() + Duration::from_secs(secs);
    let t = Instant::now();
    let mut n: u64 = 0;
    match which {
        "apply" => {
            let pool = Pool::new(2)?;
            let mut lat = Vec::new();
            while Instant::now() < until {
                for _ in 0..1000 {
                    let t = Instant::now();
                    pool.apply_async(add, (1, 2))?.get()?;
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                n += 1000;
            }
            println!(
                "apply p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
                percentile(&mut lat, 0.5),
                percentile(&mut lat, 0.9),
                percentile(&mut lat, 0.99)
            );
        }
        "apply_split" => {
            // Where an apply's round trip goes: caller → the task running, and back.
            let pool = Pool::new(2)?;
            let (mut there, mut back) = (Vec::new(), Vec::new());
            while Instant::now() < until {
                for _ in 0..1000 {
                    let t0 = mono_ns();
                    let t1 = pool.apply_async(now_ns, ())?.get()?;
                    let t2 = mono_ns();
                    there.push(t1.saturating_sub(t0) as f64 / 1e3);
                    back.push(t2.saturating_sub(t1) as f64 / 1e3);
                }
                n += 1000;
            }
            println!(
                "caller → task p50 {:.1} µs; task → caller p50 {:.1} µs",
                percentile(&mut there, 0.5),
                percentile(&mut back, 0.5)
            );
        }
        "map1" | "imap1" => {
            let pool = Pool::new(2)?;
            let cpu = self_cpu_secs();
            while Instant::now() < until {
                if which == "map1" {
                    let opts = Opts::new().chunksize(1);
                    n += pool.map_with(square, 0..100_000u64, opts)?.len() as u64;
                } else {
                    let opts = Opts::new().chunksize(1);
                    for r in pool.imap_with(square, 0..100_000u64, opts)? {
                        r?;
                        n += 1;
                    }
                }
            }
            println!(
                "parent CPU per item {:.3} µs",
                (self_cpu_secs() - cpu) * 1e6 / n as f64
            );
        }
        "start" => {
            // Pool(2) start → first result, as the benchmark's row runs it.
            let mut took = Vec::new();
            let _other = match std::env::var("HOT_OTHER_POOL") {
                Ok(_) => Some(Pool::new(2)?),
                Err(_) => None,
            };
            while Instant::now() < until {
                let t = Instant::now();
                let pool = Pool::new(2)?;
                pool.apply(add, (1, 2))?;
                took.push(t.elapsed().as_secs_f64() * 1e3);
                drop(pool);
                n += 1;
            }
            println!("first samples {:.3?}", &took[..took.len().min(4)]);
            println!(
                "start → first result p50 {:.3} ms",
                percentile(&mut took, 0.5)
            );
        }
        "mdict" => {
            // A manager's dict: one set and one get per iteration.
            let m = Manager::new()?;
            let d = m.dict::<u64, u64>()?;
            let mut lat = Vec::new();
            while Instant::now() < until {
                for i in 0..1000u64 {
                    let t = Instant::now();
                    d.insert(&(i % 10), &i)?;
                    d.get(&(i % 10))?;
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                n += 1000;
            }
            println!("dict set + get p50 {:.1} µs", percentile(&mut lat, 0.5));
        }
        "mapd" => {
            // HOT_WORKERS=n: on n workers (2 unless set).
            let workers = std::env::var("HOT_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok());
            let pool = Pool::new(workers.unwrap_or(2))?;
            while Instant::now() < until {
                n += pool.map(square, 0..100_000u64)?.len() as u64;
            }
        }
        "mapd_cold" => {
            // One map at a time on a pool left idle in between, as the benchmark's row runs.
            let pool = Pool::new(2)?;
            let mut took = Vec::new();
            while Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let t = Instant::now();
                n += pool.map(square, 0..100_000u64)?.len() as u64;
                took.push(t.elapsed().as_secs_f64() * 1e6 / 100_000.0);
            }
            println!(
                "map default p50 {:.3} µs/item, p10 {:.3}, p90 {:.3}",
                percentile(&mut took, 0.5),
                percentile(&mut took, 0.1),
                percentile(&mut took, 0.9)
            );
        }
        "mapsizes" => {
            // A map's fixed cost against its cost per item: p50 of maps of each size, back
            // to back and after an idle pause, on 1 and 2 workers.
            for workers in [1usize, 2] {
                let pool = Pool::new(workers)?;
                for size in [1u64, 1_000, 10_000, 100_000, 1_000_000] {
                    for pause in [0u64, 50] {
                        let (mut took, stop) =
                            (Vec::new(), Instant::now() + Duration::from_secs(secs));
                        while took.len() < 5 || (Instant::now() < stop && took.len() < 200) {
                            std::thread::sleep(Duration::from_millis(pause));
                            let t = Instant::now();
                            n += match std::env::var("CS").ok().and_then(|c| c.parse().ok()) {
                                Some(cs) => {
                                    pool.map_with(square, 0..size, Opts::new().chunksize(cs))?
                                }
                                None => pool.map(square, 0..size)?,
                            }
                            .len() as u64;
                            took.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        let p50 = percentile(&mut took, 0.5);
                        println!(
                            "workers {workers} size {size:>7} pause {pause:>2} ms: p50 {p50:>9.1} µs = {:.4} µs/item",
                            p50 / size as f64
                        );
                    }
                }
            }
        }
        "rss" => {
            // Worker memory after the benchmark's map and imap work, once idle.
            let method = if std::env::var_os("HOT_FORKSERVER").is_some() {
                StartMethod::ForkServer
            } else {
                StartMethod::Spawn
            };
            let pool = Pool::builder().processes(2).start_method(method).build()?;
            pool.map(square, 0..100_000u64)?;
            pool.map_with(square, 0..100_000u64, Opts::new().chunksize(1))?;
            let opts = Opts::new().chunksize(100);
            for r in pool.imap_with(square, 0..100_000u64, opts)? {
                r?;
            }
            std::thread::sleep(Duration::from_millis(200));
            for pid in pool.pids() {
                println!(
                    "worker {pid}: {:.2} MiB, private {:.2} MiB",
                    rss_mib(pid),
                    uss_mib(pid)
                );
                if let Some(script) = std::env::var_os("HOT_SMAPS_SCRIPT") {
                    let _ = std::process::Command::new(script)
                        .arg(pid.to_string())
                        .status();
                }
                if std::env::var_os("HOT_SMAPS").is_some() {
                    print!(
                        "{}",
                        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?
                    );
                }
            }
            n = 1;
        }
        "uneven" => {
            // Both mixed-duration scenarios on Pool(4), as makespan / ideal.
            let pool = Pool::new(4)?;
            pool.map(square, 0..100u64)?;
            while Instant::now() < until {
                let (a, b) = mixed_duration_ratios(&pool)?;
                println!("uneven {a:.3}× ideal, heavy-tailed {b:.3}× ideal");
                n += 1;
            }
        }
        "cpu" => {
            // 40 × 10 ms tasks on 1 worker, then on all: the speedup, once per round.
            let workers = multiproc::cpu_count();
            while Instant::now() < until {
                let mut took = [0.0; 2];
                for (i, w) in [1, workers].into_iter().enumerate() {
                    let pool = Pool::new(w)?;
                    pool.map(square, 0..10u64)?;
                    let t = Instant::now();
                    pool.map_with(busy_10ms, 0..40u32, Opts::new().chunksize(1))?;
                    took[i] = t.elapsed().as_secs_f64();
                }
                println!("speedup 1 → {workers}: {:.3}", took[0] / took[1]);
                n += 80;
            }
        }
        "queue_big" | "queue_small" => {
            while Instant::now() < until {
                if which == "queue_big" {
                    let q = Queue::new()?;
                    let p = Process::spawn(produce_big, (q.clone(), 500))?;
                    for _ in 0..500 {
                        let v: serde_bytes::ByteBuf = q.get()?;
                        n += v.len() as u64 >> 20;
                    }
                    p.join()?;
                } else {
                    let q = Queue::new()?;
                    let p = Process::spawn(produce_small, (q.clone(), 1_000_000))?;
                    for _ in 0..1_000_000 {
                        let _: u64 = q.get()?;
                        n += 1;
                    }
                    p.join()?;
                }
            }
        }
        other => {
            return Err(multiproc::Error::InvalidArgument(format!(
                "unknown scenario {other}"
            )))
        }
    }
    let dt = t.elapsed().as_secs_f64();
    println!("{which}: {n} in {dt:.2} s = {:.1} /s", n as f64 / dt);
    Ok(())
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// When the task ran, on the machine's monotonic clock.
#[pool_task]
fn now_ns() -> u64 {
    mono_ns()
}
