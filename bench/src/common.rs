//! Tasks and helpers shared by the benchmark (`main.rs`) and the profiling loop
//! (`bin/hot.rs`).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use multiproc::prelude::*;

#[pool_task]
pub fn square(x: u64) -> u64 {
    x * x
}

#[pool_task]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
pub fn busy_10ms(_x: u32) -> u32 {
    let end = Instant::now() + Duration::from_millis(10);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
    0
}

#[pool_task]
pub fn produce_small(q: Queue<u64>, n: u64) {
    for i in 0..n {
        q.put(&i).expect("put");
    }
}

/// `ByteBuf` is how Rust code says "a blob" to serde (a plain `Vec<u8>` is encoded byte by
/// byte): the analogue of Python putting `bytes`.
#[pool_task]
pub fn produce_big(q: Queue<serde_bytes::ByteBuf>, n: u32) {
    let item = serde_bytes::ByteBuf::from(vec![7u8; 1 << 20]);
    for _ in 0..n {
        q.put(&item).expect("put");
    }
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// CPU time (user + system) this process has used, all threads, in seconds.
pub fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU time (user + system) process `pid` has used, all threads, in seconds (clock-tick
/// resolution: 10 ms here).
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) if hz > 0.0 => (u + s) / hz,
        _ => f64::NAN,
    }
}

/// CPU the parent and `pids` burn in `window`, in ms per second.
pub fn cpu_ms_per_s(pids: &[u32], window: Duration) -> f64 {
    let total =
        |pids: &[u32]| self_cpu_secs() + pids.iter().map(|p| proc_cpu_secs(*p)).sum::<f64>();
    let before = total(pids);
    std::thread::sleep(window);
    (total(pids) - before) * 1e3 / window.as_secs_f64()
}

pub fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Private memory (USS) of process `pid` in MiB: its pages shared with no other process.
pub fn uss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            l.strip_prefix("Private_Clean:")
                .or_else(|| l.strip_prefix("Private_Dirty:"))
        })
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1024.0
}

#[pool_task]
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The report that started the fairness work: 20 jobs of 0, 25, ..., 475 ms.
pub fn uneven_durations() -> Vec<u64> {
    (0..20).map(|i| i * 25).collect()
}

/// Mostly 1 ms, every 100th item 200 ms.
pub fn heavy_tail_durations() -> Vec<u64> {
    (0..1000)
        .map(|i| if i % 100 == 50 { 200 } else { 1 })
        .collect()
}

/// The makespan of `durations` on `workers` for a pool without any overhead that starts
/// each job, in submission order, on the first free worker, in ms: what no pool that does
/// not know the durations in advance beats on every input.
pub fn ideal_ms(durations: &[u64], workers: usize) -> f64 {
    let mut free_at = vec![0u64; workers.max(1)];
    for &d in durations {
        if let Some(first_free) = free_at.iter_mut().min() {
            *first_free += d;
        }
    }
    free_at.into_iter().max().unwrap_or(0) as f64
}

/// Both mixed-duration scenarios on `pool` (of 4 workers): each makespan over the ideal one.
pub fn mixed_duration_ratios(pool: &Pool) -> multiproc::Result<(f64, f64)> {
    let workers = pool.processes();
    let durations = uneven_durations();
    let t = Instant::now();
    let rs: Vec<AsyncResult<u64>> = durations
        .iter()
        .map(|&d| pool.apply_async(sleep_ms, (d,)))
        .collect::<multiproc::Result<_>>()?;
    for r in rs {
        r.get()?;
    }
    let uneven = t.elapsed().as_secs_f64() * 1e3 / ideal_ms(&durations, workers);
    let durations = heavy_tail_durations();
    let t = Instant::now();
    pool.map_with(sleep_ms, durations.clone(), Opts::new().chunksize(1))?;
    let heavy = t.elapsed().as_secs_f64() * 1e3 / ideal_ms(&durations, workers);
    Ok((uneven, heavy))
}
