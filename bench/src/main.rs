//! Side-by-side benchmark: every scenario runs for multiproc and, in the same run, for the
//! peers (Python's multiprocessing through `python/peer.py`, procspawn, rayon), interleaved
//! round by round so a noisy machine affects all contenders alike. Prints a table of medians
//! with the ratio peer / multiproc, and writes the same as JSON.
//!
//! `cargo run --release -p multiproc-bench [-- --rounds N] [--ipc-only | --scaling | --codecs]`
//! (`--features mpi -- --mpi`: the MPI pool, see `cluster.rs`)

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

mod chart;
#[cfg(feature = "mpi")]
mod cluster;
mod codecs;
mod common;
use common::*;

const ITEMS: u64 = 100_000;
const PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/peer.py");

#[pool_task]
fn noop() {}

#[pool_task]
fn echo(conn: Connection<u64>) {
    while let Ok(x) = conn.recv() {
        if conn.send(&x).is_err() {
            break;
        }
    }
}

#[pool_task]
fn stream_bytes(tx: Sender<()>, n: u32) {
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..n {
        tx.send_bytes(&chunk).expect("send");
    }
}

#[pool_task]
fn increment(v: Value<u64>, go: Event, n: u64) {
    go.wait().expect("go");
    for _ in 0..n {
        *v.lock().expect("lock") += 1;
    }
}

const QUEUE_SMALL: u64 = 200_000;
const QUEUE_BIG: u32 = 200;
const PING_PONGS: usize = 5_000;
const PIPE_BIG: u32 = 500;
const INCREMENTS: u64 = 200_000;
const MANAGER_OPS: u64 = 2_000;
/// Maps of `ITEMS` per round and chunksize; the row takes their median.
const MAP_RUNS: usize = 5;

/// Process, Queue, Pipe and shared-value scenarios.
fn ipc_round(bench: &mut Bench) -> multiproc::Result<()> {
    // Process start + join.
    let mut t_ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        Process::spawn(noop, ())?.join()?;
        t_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let label = "Process start + join (ms)";
    bench.record(label, "multiproc", Some(median(&t_ms)));
    for m in ["fork", "spawn", "forkserver"] {
        bench.record(
            label,
            &format!("python {m}"),
            py_value(&format!("proc_{m}"), "value"),
        );
    }
    let mut t_ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let _ = procspawn::spawn((), |()| ()).join();
        t_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let procspawn_ms = median(&t_ms);
    bench.record(label, "procspawn", Some(procspawn_ms));

    // The same, forked by the fork server (started by the first one, kept afterwards).
    let forked = || {
        Process::new(noop, ())
            .map(|p| p.with_start_method(StartMethod::ForkServer))
            .and_then(|p| p.start().map(|()| p))
    };
    forked()?.join()?;
    let mut t_ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        forked()?.join()?;
        t_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let label = "Process start + join, ForkServer (ms)";
    bench.record(label, "multiproc", Some(median(&t_ms)));
    bench.record(
        label,
        "python forkserver",
        py_value("proc_forkserver", "value"),
    );
    bench.record(label, "procspawn", Some(procspawn_ms));

    // Queue: a child produces, this process consumes.
    let q = Queue::new()?;
    let p = Process::spawn(produce_small, (q.clone(), QUEUE_SMALL))?;
    let _: u64 = q.get()?;
    let t = Instant::now();
    for _ in 1..QUEUE_SMALL {
        let _: u64 = q.get()?;
    }
    let dt = t.elapsed().as_secs_f64();
    p.join()?;
    let label = "Queue, small items, child → parent (k items/s)";
    bench.record(
        label,
        "multiproc",
        Some((QUEUE_SMALL - 1) as f64 / dt / 1e3),
    );
    bench.record(label, "python", py_value("queue_small", "value"));

    let q = Queue::new()?;
    let p = Process::spawn(produce_big, (q.clone(), QUEUE_BIG))?;
    let _: serde_bytes::ByteBuf = q.get()?;
    let t = Instant::now();
    for _ in 1..QUEUE_BIG {
        let v: serde_bytes::ByteBuf = q.get()?;
        assert_eq!(v.len(), 1 << 20);
    }
    let dt = t.elapsed().as_secs_f64();
    p.join()?;
    let label = "Queue, 1 MiB items, child → parent (MB/s)";
    bench.record(
        label,
        "multiproc",
        Some(f64::from(QUEUE_BIG - 1) * 1.048_576 / dt),
    );
    bench.record(label, "python", py_value("queue_1mib", "value"));

    // Pipe ping-pong and bulk.
    let (here, there) = multiproc::pipe::<u64>()?;
    let p = Process::spawn(echo, (there,))?;
    for i in 0..200 {
        here.send(&i)?;
        here.recv()?;
    }
    let t = Instant::now();
    for i in 0..PING_PONGS as u64 {
        here.send(&i)?;
        assert_eq!(here.recv()?, i);
    }
    let rtt = t.elapsed().as_secs_f64() * 1e6 / PING_PONGS as f64;
    drop(here);
    p.join()?;
    let label = "Pipe ping-pong round trip (µs)";
    bench.record(label, "multiproc", Some(rtt));
    bench.record(label, "python", py_value("pipe_pingpong", "value"));

    let (rx, tx) = multiproc::pipe_oneway::<()>()?;
    let p = Process::spawn(stream_bytes, (tx, PIPE_BIG))?;
    rx.recv_bytes()?;
    let t = Instant::now();
    for _ in 1..PIPE_BIG {
        assert_eq!(rx.recv_bytes()?.len(), 1 << 20);
    }
    let dt = t.elapsed().as_secs_f64();
    p.join()?;
    let label = "Pipe, 1 MiB messages (MB/s)";
    bench.record(
        label,
        "multiproc",
        Some(f64::from(PIPE_BIG - 1) * 1.048_576 / dt),
    );
    bench.record(label, "python", py_value("pipe_1mib", "value"));

    // Locked increments of a shared value by 2 processes.
    let v = Value::new(0u64)?;
    let go = Event::new()?;
    let ps: Vec<Process> = (0..2)
        .map(|_| Process::spawn(increment, (v.clone(), go.clone(), INCREMENTS)))
        .collect::<multiproc::Result<_>>()?;
    std::thread::sleep(Duration::from_millis(20)); // let both reach the start line
    let t = Instant::now();
    go.set();
    for p in &ps {
        p.join()?;
    }
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(v.get()?, 2 * INCREMENTS);
    let label = "locked Value += 1, 2 processes (M ops/s)";
    bench.record(label, "multiproc", Some(2.0 * INCREMENTS as f64 / dt / 1e6));
    bench.record(label, "python", py_value("locked_incr", "value"));

    // A dict served by a manager process: one set and one get per iteration.
    let m = Manager::new()?;
    let d = m.dict::<u64, u64>()?;
    for i in 0..100u64 {
        d.insert(&(i % 10), &i)?;
        d.get(&(i % 10))?;
    }
    let t = Instant::now();
    for i in 0..MANAGER_OPS {
        d.insert(&(i % 10), &i)?;
        assert_eq!(d.get(&(i % 10))?, Some(i));
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / MANAGER_OPS as f64;
    let label = "Manager dict set + get (µs)";
    bench.record(label, "multiproc", Some(per));
    bench.record(label, "python", py_value("manager_dict", "value"));

    // A queue served by the manager: one put and one get per iteration.
    let q = m.queue::<u64>()?;
    for i in 0..100u64 {
        q.put(&i)?;
        q.get()?;
    }
    let t = Instant::now();
    for i in 0..MANAGER_OPS {
        q.put(&i)?;
        assert_eq!(q.get()?, i);
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / MANAGER_OPS as f64;
    let label = "Manager Queue put + get (µs)";
    bench.record(label, "multiproc", Some(per));
    bench.record(label, "python", py_value("manager_queue", "value"));

    // A lock served by the manager: one acquire and one release per iteration.
    let lock = m.lock()?;
    for _ in 0..100 {
        lock.acquire()?.release()?;
    }
    let t = Instant::now();
    for _ in 0..MANAGER_OPS {
        lock.acquire()?.release()?;
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / MANAGER_OPS as f64;
    let label = "Manager Lock acquire + release (µs)";
    bench.record(label, "multiproc", Some(per));
    bench.record(label, "python", py_value("manager_lock", "value"));
    Ok(())
}

/// Fine-grained dispatch as the pool grows: map of 100k trivial items at chunksize 1 with
/// 1, 2, 4, ... workers, up to this machine's CPUs (and at most 16).
fn scaling_round(bench: &mut Bench) -> multiproc::Result<()> {
    let cpus = multiproc::cpu_count().min(16);
    let mut w = 1;
    while w <= cpus {
        let pool = Pool::new(w)?;
        pool.map(square, 0..1000u64)?;
        let t = Instant::now();
        let v = pool.map_with(square, 0..ITEMS, Opts::new().chunksize(1))?;
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(v.len() as u64, ITEMS);
        drop(pool);
        let label = format!("map 100k, chunksize 1, {w:>2} workers (k items/s)");
        bench.record(&label, "multiproc", Some(ITEMS as f64 / dt / 1e3));
        bench.record(&label, "python", py_value(&format!("scale_w{w}"), "value"));
        w *= 2;
    }
    Ok(())
}

/// One measured figure of one contender in one round.
type Samples = BTreeMap<String, Vec<f64>>;

#[derive(Serialize)]
struct Row {
    scenario: String,
    unit: String,
    /// "lower" or "higher" is better.
    better: &'static str,
    medians: BTreeMap<String, f64>,
    /// peer median / multiproc median, oriented so that > 1 means multiproc is ahead.
    ratios: BTreeMap<String, f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `MAP_RUNS` maps of `ITEMS` squares on `pool` at chunksize `cs` (`None`: the default):
/// each one's time and parent CPU per item (µs). Rows take the median, so that one map
/// disturbed by the Python run before it (its workers still exiting) does not decide them.
fn timed_maps(pool: &Pool, cs: Option<usize>) -> multiproc::Result<(Vec<f64>, Vec<f64>)> {
    let (mut per_item, mut cpu_per_item) = (Vec::new(), Vec::new());
    for _ in 0..MAP_RUNS {
        let opts = match cs {
            Some(c) => Opts::new().chunksize(c),
            None => Opts::new(),
        };
        let (t, cpu) = (Instant::now(), self_cpu_secs());
        let v = pool.map_with(square, 0..ITEMS, opts)?;
        let cpu = self_cpu_secs() - cpu;
        assert_eq!(v.len() as u64, ITEMS);
        per_item.push(t.elapsed().as_secs_f64() * 1e6 / ITEMS as f64);
        cpu_per_item.push(cpu * 1e6 / ITEMS as f64);
    }
    Ok((per_item, cpu_per_item))
}

fn python(scenario: &str) -> Option<serde_json::Value> {
    let out = Command::new("python3")
        .arg(PY)
        .arg(scenario)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python {scenario} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn py_value(scenario: &str, key: &str) -> Option<f64> {
    py_key(python(scenario).as_ref(), key)
}

/// One figure of a Python scenario's answer.
fn py_key(answer: Option<&serde_json::Value>, key: &str) -> Option<f64> {
    answer?.get(key)?.as_f64()
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Bench {
    pool: Pool,
    samples: BTreeMap<String, Samples>,
}

impl Bench {
    fn record(&mut self, scenario: &str, who: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.samples
                .entry(scenario.to_owned())
                .or_default()
                .entry(who.to_owned())
                .or_default()
                .push(v);
        }
    }

    fn round(&mut self) -> multiproc::Result<()> {
        // apply_async round trip.
        let mut lat = Vec::with_capacity(2000);
        for _ in 0..200 {
            self.pool.apply_async(add, (1, 2))?.get()?;
        }
        for _ in 0..2000 {
            let t = Instant::now();
            self.pool.apply_async(add, (1, 2))?.get()?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
        self.record("apply_async round trip p50 (µs)", "multiproc", Some(p50));
        self.record("apply_async round trip p99 (µs)", "multiproc", Some(p99));
        if let Some(py) = python("apply_rtt") {
            self.record(
                "apply_async round trip p50 (µs)",
                "python",
                py["p50"].as_f64(),
            );
            self.record(
                "apply_async round trip p99 (µs)",
                "python",
                py["p99"].as_f64(),
            );
        }
        let threads = multiproc::dummy::Pool::new(2)?;
        let mut lat = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let t = Instant::now();
            threads.apply_async(add, (1, 2))?.get()?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        self.record(
            "apply_async round trip p50 (µs)",
            "multiproc::dummy (threads)",
            Some(percentile(&mut lat, 0.5)),
        );
        let t = Instant::now();
        let v = threads.map(square, 0..ITEMS)?;
        assert_eq!(v.len() as u64, ITEMS);
        self.record(
            "map 100k, chunksize default (µs/item)",
            "multiproc::dummy (threads)",
            Some(t.elapsed().as_secs_f64() * 1e6 / ITEMS as f64),
        );
        drop(threads);
        let ps = procspawn::Pool::new(2).expect("procspawn pool");
        let mut lat = Vec::with_capacity(500);
        for i in 0..500 {
            let t = Instant::now();
            let h = ps.spawn((1i64, i as i64), |(a, b)| a + b);
            let _ = h.join();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        self.record(
            "apply_async round trip p50 (µs)",
            "procspawn",
            Some(percentile(&mut lat, 0.5)),
        );
        self.record(
            "apply_async round trip p99 (µs)",
            "procspawn",
            Some(percentile(&mut lat, 0.99)),
        );
        drop(ps);

        // map / imap per item.
        for (name, cs) in [("map_cs1", Some(1)), ("map_csdefault", None)] {
            let (per_item, cpu_per_item) = timed_maps(&self.pool, cs)?;
            let label = format!(
                "map 100k, chunksize {} (µs/item)",
                cs.map_or("default".into(), |c| c.to_string())
            );
            self.record(&label, "multiproc", Some(median(&per_item)));
            let py = python(name);
            self.record(&label, "python", py_key(py.as_ref(), "value"));
            if cs == Some(1) {
                // What one parent spends to feed its workers: the ceiling on how many it can feed.
                let label = "map 100k, chunksize 1: parent CPU per item, all its threads (µs)";
                self.record(label, "multiproc", Some(median(&cpu_per_item)));
                self.record(label, "python", py_key(py.as_ref(), "parent_cpu_us"));
            }
            if cs.is_none() {
                let t = Instant::now();
                let v: Vec<u64> = (0..ITEMS).into_par_iter().map(|x| x * x).collect();
                assert_eq!(v.len() as u64, ITEMS);
                self.record(
                    &label,
                    "rayon (threads)",
                    Some(t.elapsed().as_secs_f64() * 1e6 / ITEMS as f64),
                );
            }
        }
        // One worker: the parent's result thread and the worker each on a core of their
        // own. Where the result list is allocated, and by which thread, once made a 2x
        // difference here that two workers did not show.
        {
            let one = Pool::new(1)?;
            one.map(square, 0..1000u64)?;
            let (per_item, _) = timed_maps(&one, None)?;
            let label = "map 100k, chunksize default, 1 worker (µs/item)";
            self.record(label, "multiproc", Some(median(&per_item)));
            self.record(label, "python", py_value("map_csdefault_w1", "value"));
        }
        for (kind, ordered) in [("imap", true), ("imap_unordered", false)] {
            for cs in [1usize, 100] {
                let t = Instant::now();
                let it = if ordered {
                    self.pool
                        .imap_with(square, 0..ITEMS, Opts::new().chunksize(cs))?
                } else {
                    self.pool
                        .imap_unordered_with(square, 0..ITEMS, Opts::new().chunksize(cs))?
                };
                let n = it.filter(Result::is_ok).count();
                assert_eq!(n as u64, ITEMS);
                let label = format!("{kind} 100k, chunksize {cs} (µs/item)");
                self.record(
                    &label,
                    "multiproc",
                    Some(t.elapsed().as_secs_f64() * 1e6 / ITEMS as f64),
                );
                self.record(
                    &label,
                    "python",
                    py_value(&format!("{kind}_cs{cs}"), "value"),
                );
            }
        }

        // Pool start → first result, then close + join: medians of several starts, as the
        // Process rows take, so that one start disturbed by the peer run before it (Python's
        // workers still exiting) does not decide the row. Python's is one start per run.
        const STARTS: usize = 10;
        for (method, py_methods) in [
            (StartMethod::Spawn, vec!["spawn", "fork"]),
            (StartMethod::ForkServer, vec!["forkserver"]),
        ] {
            let (mut first, mut close_join) = (Vec::new(), Vec::new());
            for _ in 0..STARTS {
                let t = Instant::now();
                let pool = Pool::builder().processes(2).start_method(method).build()?;
                pool.apply(add, (1, 2))?;
                first.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                pool.close();
                pool.join()?;
                close_join.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let label = format!("Pool(2) start → first result, {method:?} (ms)");
            self.record(&label, "multiproc", Some(median(&first)));
            let cj = format!("Pool(2) close + join, {method:?} (ms)");
            self.record(&cj, "multiproc", Some(median(&close_join)));
            for m in py_methods {
                if let Some(py) = python(&format!("start_{m}")) {
                    self.record(&label, &format!("python {m}"), py["value"].as_f64());
                    self.record(&cj, &format!("python {m}"), py["close_join_ms"].as_f64());
                }
            }
        }
        let mut first = Vec::new();
        for _ in 0..STARTS {
            let t = Instant::now();
            let ps = procspawn::Pool::new(2).expect("procspawn pool");
            let _ = ps.spawn((1i64, 2i64), |(a, b)| a + b).join();
            first.push(t.elapsed().as_secs_f64() * 1e3);
            drop(ps);
        }
        self.record(
            "Pool(2) start → first result, Spawn (ms)",
            "procspawn",
            Some(median(&first)),
        );

        // CPU-bound 10 ms tasks: speedup from 1 to N workers.
        let n = multiproc::cpu_count();
        let mut times = BTreeMap::new();
        for workers in [1, n] {
            let pool = Pool::new(workers)?;
            pool.map(square, 0..10u64)?;
            let t = Instant::now();
            pool.map_with(busy_10ms, 0..40u32, Opts::new().chunksize(1))?;
            times.insert(workers, t.elapsed().as_secs_f64());
        }
        let label = format!("40 × 10 ms CPU tasks: speedup 1 → {n} workers (×)");
        self.record(&label, "multiproc", Some(times[&1] / times[&n]));
        if let (Some(a), Some(b)) = (
            py_value("cpu_1", "value"),
            py_value(&format!("cpu_{n}"), "value"),
        ) {
            self.record(&label, "python", Some(a / b));
        }

        // Uneven work on Pool(4): makespan against the ideal one.
        let uneven = Pool::new(4)?;
        uneven.map(square, 0..100u64)?;
        let (a, b) = mixed_duration_ratios(&uneven)?;
        let label = "20 apply_async jobs of 0–475 ms, Pool(4): makespan / ideal (×)";
        self.record(label, "multiproc", Some(a));
        self.record(label, "python", py_value("uneven", "value"));
        let label = "map of 990 × 1 ms + 10 × 200 ms, chunksize 1, Pool(4): makespan / ideal (×)";
        self.record(label, "multiproc", Some(b));
        self.record(label, "python", py_value("heavy_tail", "value"));
        drop(uneven);

        // What a waiting pool costs a busy machine: idle, and waiting on one slow task.
        let pids = self.pool.pids();
        let label = "idle Pool(2), 2 s: CPU of parent + workers (ms per s)";
        self.record(
            label,
            "multiproc",
            Some(cpu_ms_per_s(&pids, Duration::from_secs(2))),
        );
        self.record(label, "python", py_value("idle_cpu", "value"));
        let slow = self.pool.apply_async(sleep_ms, (2600,))?;
        std::thread::sleep(Duration::from_millis(200));
        let label =
            "Pool(2) waiting on one 2.6 s sleep task, 2 s: CPU of parent + workers (ms per s)";
        self.record(
            label,
            "multiproc",
            Some(cpu_ms_per_s(&pids, Duration::from_secs(2))),
        );
        self.record(label, "python", py_value("slow_cpu", "value"));
        slow.get()?;

        // Idle worker memory.
        let rss = pids.iter().map(|p| rss_mib(*p)).sum::<f64>() / pids.len().max(1) as f64;
        self.record("idle worker RSS (MiB)", "multiproc", Some(rss));
        let py = python("idle_rss");
        self.record(
            "idle worker RSS (MiB)",
            "python",
            py_key(py.as_ref(), "value"),
        );
        // RSS counts the pages of libc and of the binary that every process using them
        // shares; what a worker costs the machine is its private memory.
        let label = "idle worker private memory, USS (MiB)";
        let uss = pids.iter().map(|p| uss_mib(*p)).sum::<f64>() / pids.len().max(1) as f64;
        self.record(label, "multiproc", Some(uss));
        self.record(label, "python", py_key(py.as_ref(), "uss_mib"));
        Ok(())
    }
}

/// Peak memory of an imap over 10M items, in a fresh process so earlier scenarios do not
/// count.
fn imap_memory_child() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let n = pool
        .imap_with(square, 0..10_000_000u64, Opts::new().chunksize(1000))?
        .filter(Result::is_ok)
        .count();
    assert_eq!(n, 10_000_000);
    println!("{}", peak_rss_mib());
    Ok(())
}

fn better(scenario: &str) -> &'static str {
    if scenario.contains("speedup") || scenario.contains("/s)") {
        "higher"
    } else {
        "lower"
    }
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    procspawn::init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--imap-memory") {
        return imap_memory_child();
    }
    #[cfg(feature = "mpi")]
    if args.get(1).map(String::as_str) == Some("--mpi-job") {
        let n = |i: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(1);
        return cluster::job(n(2), n(3));
    }
    // `--mpi` (built with `--features mpi`): the MPI pool against the local one.
    let mpi = args.iter().any(|a| a == "--mpi");
    if mpi && !cfg!(feature = "mpi") {
        eprintln!("--mpi needs the benchmark built with --features mpi");
        std::process::exit(2);
    }
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    // `--ipc-only`: just the Process / Queue / Pipe / Value / Manager scenarios.
    let ipc_only = args.iter().any(|a| a == "--ipc-only");
    // `--scaling`: just map at chunksize 1 from 1 worker up to the machine's CPUs.
    let scaling = args.iter().any(|a| a == "--scaling");
    // `--codecs`: just the wire codec against bincode 1.3, postcard and rmp-serde.
    let codecs = args.iter().any(|a| a == "--codecs");
    let mut bench = Bench {
        pool: Pool::new(2)?,
        samples: BTreeMap::new(),
    };
    for r in 0..rounds {
        eprintln!("round {}/{rounds}", r + 1);
        if scaling {
            scaling_round(&mut bench)?;
            continue;
        }
        if codecs {
            codecs::round(&mut bench);
            continue;
        }
        #[cfg(feature = "mpi")]
        if mpi {
            cluster::round(&mut bench)?;
            continue;
        }
        if !ipc_only {
            bench.round()?;
        }
        ipc_round(&mut bench)?;
        if ipc_only {
            continue;
        }
        let exe = std::env::current_exe()?;
        let ours = Command::new(exe).arg("--imap-memory").output()?;
        let ours = String::from_utf8_lossy(&ours.stdout)
            .trim()
            .parse::<f64>()
            .ok();
        bench.record(
            "imap over 10M items, chunksize 1000: peak parent RSS (MiB)",
            "multiproc",
            ours,
        );
        bench.record(
            "imap over 10M items, chunksize 1000: peak parent RSS (MiB)",
            "python",
            py_value("imap_memory", "value"),
        );
    }

    let mut rows = Vec::new();
    for (scenario, by_who) in &bench.samples {
        let medians: BTreeMap<String, f64> =
            by_who.iter().map(|(w, v)| (w.clone(), median(v))).collect();
        let Some(&ours) = medians.get("multiproc") else {
            continue;
        };
        let dir = better(scenario);
        let ratios = medians
            .iter()
            .filter(|(w, _)| *w != "multiproc")
            .map(|(w, &m)| (w.clone(), if dir == "lower" { m / ours } else { ours / m }))
            .collect();
        rows.push(Row {
            scenario: scenario.clone(),
            unit: scenario
                .rsplit('(')
                .next()
                .unwrap_or("")
                .trim_end_matches(')')
                .to_owned(),
            better: dir,
            medians,
            ratios,
        });
    }
    println!("\nmedians of {rounds} interleaved rounds; ratio = how many times multiproc is ahead (peer / multiproc, or multiproc / peer where higher is better)\n");
    println!("| scenario | multiproc | peer | peer median | ratio |");
    println!("|---|---|---|---|---|");
    for row in &rows {
        let ours = row.medians["multiproc"];
        if row.ratios.is_empty() {
            println!("| {} | {ours:.3} | — | — | — |", row.scenario);
        }
        for (who, ratio) in &row.ratios {
            println!(
                "| {} | {ours:.3} | {who} | {:.3} | {ratio:.2}× |",
                row.scenario, row.medians[who]
            );
        }
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&rows).unwrap_or_default(),
    )?;
    println!("\nJSON: {}", out.display());
    if scaling {
        // The chart the README shows: items/s against workers, ours and Python's.
        let medians = rows
            .iter()
            .map(|r| (r.scenario.clone(), r.medians.clone()))
            .collect();
        let svg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scaling.svg");
        match chart::draw(&svg, &chart::series(&medians), multiproc::cpu_count()) {
            Ok(()) => println!("chart: {}", svg.display()),
            Err(e) => eprintln!("no chart: {e}"),
        }
    }
    Ok(())
}
