"""Python multiprocessing's side of the benchmark: one scenario per invocation, JSON out.

Standard library only. Scenarios mirror bench/src/main.rs; inputs are fixed here and there.
"""
import json
import multiprocessing as mp
import os
import re
import resource
import statistics
import sys
import time


def square(x):
    return x * x


def add(a, b):
    return a + b


def busy_10ms(_):
    end = time.perf_counter() + 0.010
    while time.perf_counter() < end:
        pass
    return 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def uss_kib(pid):
    """Memory of the process's own (private) pages, not shared with any other process."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def self_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def noop():
    pass


def produce_small(q, n):
    for i in range(n):
        q.put(i)


def produce_big(q, n):
    item = bytes(1 << 20)
    for _ in range(n):
        q.put(item)


def echo(conn):
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(x)


def stream_bytes(conn, n):
    chunk = bytes(1 << 20)
    for _ in range(n):
        conn.send_bytes(chunk)


def increment(v, go, n):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def sleep_ms(ms):
    time.sleep(ms / 1000.0)
    return ms


def uneven_durations():
    # The report that started the fairness work: 20 jobs of 0, 25, ..., 475 ms.
    return [i * 25 for i in range(20)]


def heavy_tail_durations():
    # Mostly 1 ms, every 100th item 200 ms.
    return [200 if i % 100 == 50 else 1 for i in range(1000)]


def ideal_ms(durations, workers):
    # A pool without overhead: each job, in submission order, on the first free worker.
    free_at = [0] * workers
    for d in durations:
        i = free_at.index(min(free_at))
        free_at[i] += d
    return max(free_at)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    scenario = sys.argv[1]
    n_items = 100_000
    if scenario == "apply_rtt":
        with mp.Pool(2) as pool:
            for _ in range(200):
                pool.apply_async(add, (1, 2)).get()
            lat = []
            for _ in range(2000):
                t = time.perf_counter()
                pool.apply_async(add, (1, 2)).get()
                lat.append((time.perf_counter() - t) * 1e6)
        out = {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99)}
    elif scenario == "imap_memory":
        with mp.Pool(2) as pool:
            n = 0
            for _ in pool.imap(square, range(10_000_000), chunksize=1000):
                n += 1
        assert n == 10_000_000
        import resource
        out = {"value": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    elif scenario.startswith("scale_w"):
        # map at chunksize 1 with N workers: items per second (thousands).
        workers = int(scenario[len("scale_w"):])
        with mp.Pool(workers) as pool:
            pool.map(square, range(1000))
            t = time.perf_counter()
            r = pool.map(square, range(n_items), chunksize=1)
            dt = time.perf_counter() - t
        assert len(r) == n_items
        out = {"value": n_items / dt / 1e3}
    elif scenario.startswith("map_") or scenario.startswith("imap"):
        # An optional "_w<N>" suffix: a pool of N workers instead of 2.
        workers = 2
        if re.fullmatch(r".*_w\d+", scenario):
            scenario, w = scenario.rsplit("_w", 1)
            workers = int(w)
        kind, cs = scenario.rsplit("_cs", 1)
        cs = None if cs == "default" else int(cs)
        # A map is the median of five, as the Rust side takes it; an imap is one run.
        runs = 5 if kind == "map" else 1
        per_item, cpu_per_item = [], []
        with mp.Pool(workers) as pool:
            pool.map(square, range(1000))
            for _ in range(runs):
                cpu = self_cpu()
                t = time.perf_counter()
                if kind == "map":
                    r = pool.map(square, range(n_items), chunksize=cs)
                elif kind == "imap":
                    r = list(pool.imap(square, range(n_items), chunksize=cs))
                else:
                    r = list(pool.imap_unordered(square, range(n_items), chunksize=cs))
                dt = time.perf_counter() - t
                cpu = self_cpu() - cpu
                assert len(r) == n_items
                per_item.append(dt * 1e6 / n_items)
                cpu_per_item.append(cpu * 1e6 / n_items)
        out = {
            "value": statistics.median(per_item),
            "parent_cpu_us": statistics.median(cpu_per_item),
        }
    elif scenario.startswith("start_"):
        method = scenario[len("start_"):]
        ctx = mp.get_context(method)
        t = time.perf_counter()
        pool = ctx.Pool(2)
        pool.apply(add, (1, 2))
        first = time.perf_counter() - t
        t = time.perf_counter()
        pool.close()
        pool.join()
        out = {"value": first * 1e3, "close_join_ms": (time.perf_counter() - t) * 1e3}
    elif scenario.startswith("cpu_"):
        workers = int(scenario[len("cpu_"):])
        with mp.Pool(workers) as pool:
            pool.map(square, range(10))
            t = time.perf_counter()
            pool.map(busy_10ms, range(40), chunksize=1)
            out = {"value": (time.perf_counter() - t) * 1e3}
    elif scenario in ("idle_cpu", "slow_cpu"):
        # CPU the parent and its workers burn per second while waiting (ms/s).
        with mp.Pool(2) as pool:
            pool.map(square, range(100))
            kids = mp.active_children()
            if scenario == "slow_cpu":
                slow = pool.apply_async(sleep_ms, (2600,))
                time.sleep(0.2)
            total = lambda: self_cpu() + sum(proc_cpu(k.pid) for k in kids)
            before = total()
            time.sleep(2)
            out = {"value": (total() - before) * 1e3 / 2}
            if scenario == "slow_cpu":
                slow.get()
    elif scenario == "idle_rss":
        with mp.Pool(2) as pool:
            pool.map(square, range(100))
            kids = mp.active_children()
            out = {
                "value": sum(rss_kib(p.pid) for p in kids) / len(kids) / 1024.0,
                "uss_mib": sum(uss_kib(p.pid) for p in kids) / len(kids) / 1024.0,
            }
    elif scenario.startswith("proc_"):
        ctx = mp.get_context(scenario[len("proc_"):])
        times = []
        for _ in range(20):
            t = time.perf_counter()
            p = ctx.Process(target=noop)
            p.start()
            p.join()
            times.append((time.perf_counter() - t) * 1e3)
        out = {"value": percentile(times, 0.5)}
    elif scenario in ("queue_small", "queue_1mib"):
        small = scenario == "queue_small"
        n = 200_000 if small else 200
        q = mp.Queue()
        p = mp.Process(target=produce_small if small else produce_big, args=(q, n))
        p.start()
        q.get()
        t = time.perf_counter()
        for _ in range(n - 1):
            q.get()
        dt = time.perf_counter() - t
        p.join()
        out = {"value": (n - 1) / dt / 1e3 if small else (n - 1) * 1.048576 / dt}
    elif scenario == "pipe_pingpong":
        here, there = mp.Pipe()
        p = mp.Process(target=echo, args=(there,))
        p.start()
        there.close()
        for i in range(200):
            here.send(i)
            here.recv()
        n = 5000
        t = time.perf_counter()
        for i in range(n):
            here.send(i)
            here.recv()
        out = {"value": (time.perf_counter() - t) * 1e6 / n}
        here.send(None)
        p.join()
    elif scenario == "pipe_1mib":
        n = 500
        rx, tx = mp.Pipe(duplex=False)
        p = mp.Process(target=stream_bytes, args=(tx, n))
        p.start()
        tx.close()
        rx.recv_bytes()
        t = time.perf_counter()
        for _ in range(n - 1):
            rx.recv_bytes()
        dt = time.perf_counter() - t
        p.join()
        out = {"value": (n - 1) * 1.048576 / dt}
    elif scenario == "locked_incr":
        n = 200_000
        v = mp.Value("q", 0)
        go = mp.Event()
        ps = [mp.Process(target=increment, args=(v, go, n)) for _ in range(2)]
        for p in ps:
            p.start()
        time.sleep(0.02)
        t = time.perf_counter()
        go.set()
        for p in ps:
            p.join()
        dt = time.perf_counter() - t
        assert v.value == 2 * n
        out = {"value": 2 * n / dt / 1e6}
    elif scenario == "manager_dict":
        # A dict served by a manager process: one set and one get per iteration.
        n = 2000
        with mp.Manager() as m:
            d = m.dict()
            for i in range(100):
                d[i % 10] = i
                d[i % 10]
            t = time.perf_counter()
            for i in range(n):
                d[i % 10] = i
                assert d[i % 10] == i
            dt = time.perf_counter() - t
        out = {"value": dt * 1e6 / n}
    elif scenario == "manager_queue":
        # A queue served by a manager process: one put and one get per iteration.
        n = 2000
        with mp.Manager() as m:
            q = m.Queue()
            for i in range(100):
                q.put(i)
                q.get()
            t = time.perf_counter()
            for i in range(n):
                q.put(i)
                assert q.get() == i
            dt = time.perf_counter() - t
        out = {"value": dt * 1e6 / n}
    elif scenario == "manager_lock":
        # A lock served by a manager process: one acquire and one release per iteration.
        n = 2000
        with mp.Manager() as m:
            lock = m.Lock()
            for _ in range(100):
                lock.acquire()
                lock.release()
            t = time.perf_counter()
            for _ in range(n):
                lock.acquire()
                lock.release()
            dt = time.perf_counter() - t
        out = {"value": dt * 1e6 / n}
    elif scenario in ("uneven", "heavy_tail"):
        durations = uneven_durations() if scenario == "uneven" else heavy_tail_durations()
        with mp.Pool(4) as pool:
            pool.map(square, range(100))
            t = time.perf_counter()
            if scenario == "uneven":
                rs = [pool.apply_async(sleep_ms, (d,)) for d in durations]
                for r in rs:
                    r.get()
            else:
                pool.map(sleep_ms, durations, chunksize=1)
            ms = (time.perf_counter() - t) * 1e3
        out = {"value": ms / ideal_ms(durations, 4)}
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
