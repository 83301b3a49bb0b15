"""Python multiprocessing's side of the benchmark: one scenario per invocation, JSON out.

Standard library only. Scenarios mirror bench/src/main.rs; inputs are fixed here and there.
"""
import json
import multiprocessing as mp
import os
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
    elif scenario.startswith("map_") or scenario.startswith("imap"):
        kind, cs = scenario.rsplit("_cs", 1)
        cs = None if cs == "default" else int(cs)
        with mp.Pool(2) as pool:
            pool.map(square, range(1000))
            t = time.perf_counter()
            if kind == "map":
                r = pool.map(square, range(n_items), chunksize=cs)
            elif kind == "imap":
                r = list(pool.imap(square, range(n_items), chunksize=cs))
            else:
                r = list(pool.imap_unordered(square, range(n_items), chunksize=cs))
            dt = time.perf_counter() - t
        assert len(r) == n_items
        out = {"value": dt * 1e6 / n_items}
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
    elif scenario == "idle_rss":
        with mp.Pool(2) as pool:
            pool.map(square, range(100))
            kids = mp.active_children()
            out = {"value": sum(rss_kib(p.pid) for p in kids) / len(kids) / 1024.0}
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
