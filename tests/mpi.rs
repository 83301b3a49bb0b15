//! The MPI backend through real `mpirun` jobs. MPI initialises once per process, so the test
//! harness is never a rank: each test below launches `mpirun -n N` on this same test binary,
//! selecting one of the `rank_program_*` functions (ignored in a plain run; they are the
//! programs, not the checks), whose rank 0 runs the scenario and prints `MPI-OK <name>`
//! when every assertion held. The checks are on the launcher's exit status and output.
#![cfg(feature = "mpi")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc::{Error, Result, TaskPool};

/// How long one `mpirun` job may take before the test calls it a hang and kills it.
const JOB_LIMIT: Duration = Duration::from_secs(180);

/// Set in the ranks of a job a check launched: the programs run only there.
const IN_JOB: &str = "MULTIPROC_MPI_TEST_JOB";

/// `mpirun -n ranks` on this binary's `program`, with `extra` launcher options: the
/// status and the merged output.
fn mpirun(ranks: usize, program: &str, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", &ranks.to_string(), "--oversubscribe"])
        // Containers often forbid the cross-memory-attach shared memory copy.
        .args(["--mca", "btl_vader_single_copy_mechanism", "none"])
        // Threads inside a rank need more than the one core Open MPI binds it to.
        .args(["--bind-to", "none"])
        .args(extra);
    launch(&mut cmd, &exe, program)
}

/// Runs the launcher `cmd` on `exe`'s `program`. A job still running after `JOB_LIMIT` is
/// killed and fails the test: whatever happens, the test never hangs.
fn launch(
    cmd: &mut Command,
    exe: &std::path::Path,
    program: &str,
) -> (std::process::ExitStatus, String) {
    // Each job gets its own session directory: concurrent `mpirun`s sharing Open MPI's
    // default one race on creating and removing it ("orte_session_dir failed" under load).
    let session = std::env::temp_dir().join(format!(
        "multiproc-mpi-test-{}-{program}",
        std::process::id()
    ));
    std::fs::create_dir_all(&session).expect("a session directory for mpirun");
    cmd.arg(exe)
        .args([
            program,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env(IN_JOB, "1")
        .env("OMPI_MCA_orte_tmpdir_base", &session)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("mpirun (Open MPI) must be installed: bash .ci/test installs it");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + JOB_LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for mpirun") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&session);
            panic!("mpirun {program} still running after {JOB_LIMIT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&session);
    (status, text)
}

fn in_job() -> bool {
    std::env::var_os(IN_JOB).is_some()
}

fn check_ok(ranks: usize, program: &str) {
    let (status, out) = mpirun(ranks, program, &[]);
    assert!(status.success(), "mpirun {program}: {status}\n{out}");
    assert!(out.contains(&format!("MPI-OK {program}")), "{out}");
}

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

#[pool_task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
fn whoami(x: u64) -> (u32, u64) {
    (std::process::id(), x)
}

#[pool_task]
fn refuse_seven(x: u64) -> u64 {
    if x == 7 {
        panic!("seven is refused");
    }
    x
}

#[pool_task]
fn take_queue(q: Queue<u32>) -> u32 {
    q.get().unwrap_or(0)
}

static LEVEL: AtomicUsize = AtomicUsize::new(0);

#[pool_task]
fn set_level(level: usize) {
    LEVEL.store(level, Ordering::SeqCst);
}

#[pool_task]
fn level() -> usize {
    LEVEL.load(Ordering::SeqCst)
}

/// CPU seconds this process has used (user + system).
#[pool_task]
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Waits (up to a minute) until `k` items run at once in this rank; returns how many did.
#[pool_task]
fn together(k: usize) -> usize {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut most = now;
    while most < k && Instant::now() < deadline {
        most = most.max(RUNNING.load(Ordering::SeqCst));
        std::thread::yield_now();
    }
    // Stay until everyone has seen the full count.
    std::thread::sleep(Duration::from_millis(50));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    most
}

#[pool_task]
fn die_on(x: u64, bad: u64) -> u64 {
    if x == bad {
        // SAFETY: the rank kills itself, as the OOM killer or a crash would.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(5));
    x
}

/// Generic code over `TaskPool`, as a user would write it for any backend.
fn sum_of_squares(pool: &impl TaskPool, n: u64) -> Result<u64> {
    Ok(pool.map(square, 0..n)?.into_iter().sum())
}

#[multiproc::test]
#[ignore = "an MPI rank program: `the_pool_family_runs_over_worker_ranks` launches it"]
fn rank_program_family() {
    if !in_job() {
        return;
    }
    assert!(multiproc::mpi::launched());
    assert_eq!(multiproc::mpi::world_size(), 3);
    let pool = multiproc::mpi::Pool::builder()
        .initializer(set_level, (7usize,))
        .build()
        .unwrap();
    assert_eq!(pool.processes(), 2);
    let pids = pool.pids();
    assert!(!pids.contains(&std::process::id()), "{pids:?}");

    let v = pool.map(square, 0..500u64).unwrap();
    assert_eq!(v, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    let (tx, rx) = std::sync::mpsc::channel();
    let r = pool
        .apply_async_with(
            add,
            (4, 5),
            Opts::new().callback(move |v: &i64| tx.send(*v).unwrap()),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 9);
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), 9);
    assert_eq!(pool.starmap(add, vec![(1, 1), (2, 2)]).unwrap(), [2, 4]);
    let ordered: Vec<u64> = pool
        .imap(square, 0..100u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ordered, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..100u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, ordered);
    let whose = pool
        .map_with(whoami, 0..64u64, Opts::new().chunksize(1))
        .unwrap();
    assert!(
        whose.iter().all(|(pid, _)| pids.contains(pid)),
        "{whose:?} vs {pids:?}"
    );
    assert_eq!(sum_of_squares(&pool, 10).unwrap(), 285);
    // The initializer ran on every worker rank.
    for _ in 0..4 {
        assert_eq!(pool.apply(level, ()).unwrap(), 7);
    }

    // A panic is that item's error, with its message; the others are fine.
    let got: Vec<Result<u64>> = pool
        .imap_with(refuse_seven, 0..12u64, Opts::new().chunksize(3))
        .unwrap()
        .collect();
    for (x, r) in got.into_iter().enumerate() {
        match r {
            Err(Error::TaskPanicked { message, .. }) if x == 7 => {
                assert!(message.contains("seven is refused"), "{message}")
            }
            Ok(v) if x != 7 => assert_eq!(v, x as u64),
            other => panic!("item {x}: {other:?}"),
        }
    }
    // What cannot work on a cluster is refused before anything is sent.
    let q: Queue<u32> = Queue::new().unwrap();
    assert!(matches!(
        pool.apply(take_queue, (q,)),
        Err(Error::InvalidArgument(_))
    ));
    let limited = Opts::new().kill_after(Duration::from_secs(1));
    assert!(matches!(
        pool.map_with(square, 0..4u64, limited),
        Err(Error::InvalidArgument(_))
    ));

    // Idle worker ranks sleep: over an idle second each uses well under half a core.
    let before: Vec<f64> = (0..2).map(|_| pool.apply(cpu_secs, ()).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(1));
    let after: Vec<f64> = (0..2).map(|_| pool.apply(cpu_secs, ()).unwrap()).collect();
    let used = after.iter().sum::<f64>() - before.iter().sum::<f64>();
    assert!(
        used < 0.5,
        "idle worker ranks used {used} CPU seconds in 1 s"
    );

    pool.close();
    pool.join().unwrap();
    assert!(matches!(pool.apply(add, (1, 1)), Err(Error::PoolClosed)));
    // A second pool meets the same ranks.
    let again = multiproc::mpi::Pool::new().unwrap();
    assert_eq!(again.map(square, 0..3u64).unwrap(), [0, 1, 4]);
    println!("MPI-OK rank_program_family");
}

#[test]
fn the_pool_family_runs_over_worker_ranks() {
    check_ok(3, "rank_program_family");
}

#[multiproc::test]
#[ignore = "an MPI rank program: `threads_inside_each_rank_run_items_at_once` launches it"]
fn rank_program_threads() {
    if !in_job() {
        return;
    }
    let pool = multiproc::mpi::Pool::builder()
        .threads_per_worker(3)
        .build()
        .unwrap();
    // One chunk of 3 items per rank: each chunk's items must meet inside their rank.
    let met = pool
        .map_with(together, vec![3usize; 6], Opts::new().chunksize(3))
        .unwrap();
    assert_eq!(met, [3; 6]);
    let v = pool
        .map_with(square, 0..300u64, Opts::new().chunksize(30))
        .unwrap();
    assert_eq!(v, (0..300u64).map(|x| x * x).collect::<Vec<_>>());
    println!("MPI-OK rank_program_threads");
}

#[test]
fn threads_inside_each_rank_run_items_at_once() {
    check_ok(3, "rank_program_threads");
}

#[multiproc::test]
#[ignore = "an MPI rank program: `a_single_rank_launch_is_a_clear_error` launches it"]
fn rank_program_single() {
    if !in_job() {
        return;
    }
    match multiproc::mpi::Pool::new() {
        Err(Error::MpiLaunch(m)) => assert!(m.contains("single rank"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!multiproc::mpi::launched());
    println!("MPI-OK rank_program_single");
}

#[test]
fn a_single_rank_launch_is_a_clear_error() {
    check_ok(1, "rank_program_single");
}

#[multiproc::test]
fn without_a_launcher_the_pool_says_how_to_start() {
    match multiproc::mpi::Pool::new() {
        Err(Error::MpiLaunch(m)) => assert!(m.contains("mpirun -n N"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(multiproc::mpi::world_size(), 1);
}

#[multiproc::test]
#[ignore = "an MPI rank program: `a_rank_killed_mid_map_ends_the_job` launches it"]
fn rank_program_killed() {
    if !in_job() {
        return;
    }
    let pool = multiproc::mpi::Pool::new().unwrap();
    let _ = pool.starmap_with(
        die_on,
        (0..200u64).map(|x| (x, 50)),
        Opts::new().chunksize(1),
    );
    println!("rank 0 went on after a rank died");
}

#[test]
fn a_rank_killed_mid_map_ends_the_job() {
    let (status, out) = mpirun(3, "rank_program_killed", &[]);
    assert!(!status.success(), "{out}");
    assert!(!out.contains("rank 0 went on"), "{out}");
    assert!(
        out.contains("multiproc: rank 0 was told to stop by the MPI launcher")
            || out.contains("signal 9"),
        "{out}"
    );
}

/// This process's network namespace (`net:[inode]`): which stand-in host it runs on.
#[pool_task]
fn net_namespace() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[multiproc::test]
#[ignore = "an MPI rank program: `ranks_run_across_hosts_over_tcp` launches it"]
fn rank_program_hosts() {
    if !in_job() {
        return;
    }
    let pool = multiproc::mpi::Pool::new().unwrap();
    let mine = net_namespace();
    let theirs = pool
        .map_with(net_namespace_of, 0..8u32, Opts::new().chunksize(1))
        .unwrap();
    assert!(theirs.iter().all(|ns| *ns != mine), "{mine} vs {theirs:?}");
    assert_eq!(pool.map(square, 0..100u64).unwrap()[9], 81);
    println!("MPI-OK rank_program_hosts");
}

#[pool_task]
fn net_namespace_of(_i: u32) -> String {
    net_namespace()
}

/// Two stand-in hosts: network namespaces whose veths meet on a bridge in a third, with
/// private addresses inside them only. Removed on drop (removing a namespace removes its
/// links).
struct Hosts {
    names: [String; 3],
    dir: std::path::PathBuf,
}

impl Hosts {
    const ADDRS: [&'static str; 2] = ["10.77.0.1", "10.77.0.2"];

    fn make() -> std::result::Result<Hosts, String> {
        let tag = std::process::id();
        let names = [
            format!("mpA{tag}"),
            format!("mpB{tag}"),
            format!("mpH{tag}"),
        ];
        let dir = std::env::temp_dir().join(format!("multiproc-mpi-hosts-{tag}"));
        let hosts = Hosts { names, dir };
        let ip = |args: &[&str]| -> std::result::Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let [a, b, hub] = &hosts.names;
        for ns in [a, b, hub] {
            ip(&["netns", "add", ns])?;
        }
        ip(&["-n", hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", hub, "link", "set", "br0", "up"])?;
        for (ns, (port, addr)) in [a, b]
            .into_iter()
            .zip([("pA", Self::ADDRS[0]), ("pB", Self::ADDRS[1])])
        {
            ip(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns",
                hub,
            ])?;
            ip(&["-n", hub, "link", "set", port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        std::fs::create_dir_all(&hosts.dir).map_err(|e| e.to_string())?;
        // The stand-in remote shell: `agent HOST COMMAND...` runs COMMAND "on" HOST.
        let agent = format!(
            "#!/bin/sh\nhost=\"$1\"; shift\ncase \"$host\" in\n  {}) ns={a} ;;\n  {}) ns={b} ;;\n  \
             *) echo \"agent: unknown host $host\" >&2; exit 1 ;;\nesac\nexec ip netns exec \
             \"$ns\" sh -c \"$*\"\n",
            Self::ADDRS[0],
            Self::ADDRS[1]
        );
        std::fs::write(hosts.agent(), agent).map_err(|e| e.to_string())?;
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(hosts.agent(), mode).map_err(|e| e.to_string())?;
        // Rank 0 on the first host, the two workers on the second.
        let hostfile = format!("{} slots=1\n{} slots=2\n", Self::ADDRS[0], Self::ADDRS[1]);
        std::fs::write(hosts.hostfile(), hostfile).map_err(|e| e.to_string())?;
        Ok(hosts)
    }

    fn agent(&self) -> std::path::PathBuf {
        self.dir.join("agent.sh")
    }

    fn hostfile(&self) -> std::path::PathBuf {
        self.dir.join("hosts")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn ranks_run_across_hosts_over_tcp() {
    let hosts = match Hosts::make() {
        Ok(h) => h,
        Err(why) => {
            eprintln!(
                "SKIPPED ranks_run_across_hosts_over_tcp: cannot make network namespaces \
                 here ({why}); it needs root and `ip` (iproute2)"
            );
            return;
        }
    };
    let (agent, hostfile) = (hosts.agent(), hosts.hostfile());
    let (agent, hostfile) = (agent.to_string_lossy(), hostfile.to_string_lossy());
    // mpirun itself runs "on" the first host, through the agent.
    let exe = std::env::current_exe().expect("the test binary's path");
    let first = &hosts.names[0];
    let opts = [
        "--hostfile",
        &*hostfile,
        "--mca",
        "plm_rsh_agent",
        &*agent,
        "--mca",
        "rtc_hwloc_vmhole",
        "none",
        "--mca",
        "btl",
        "self,tcp",
        "--mca",
        "oob_tcp_if_include",
        "10.77.0.0/24",
        "--mca",
        "btl_tcp_if_include",
        "10.77.0.0/24",
    ];
    let (status, out) = launch(
        Command::new("ip")
            .args(["netns", "exec", first, "mpirun", "-n", "3"])
            .args(opts),
        &exe,
        "rank_program_hosts",
    );
    assert!(status.success(), "{status}\n{out}");
    assert!(out.contains("MPI-OK rank_program_hosts"), "{out}");
}
