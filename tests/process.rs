//! `Process` through real child processes: exit codes, signals, names, grandchildren,
//! daemons, many children at once, and children dying with their parent.

mod common;

use std::time::Duration;

use multiproc::prelude::*;
use multiproc::ProcessInfo;

const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn nothing() {}

#[pool_task]
fn exit_with(code: i32) {
    std::process::exit(code);
}

#[pool_task]
fn panics() {
    panic!("deliberate");
}

/// Reports its pid, then waits (for a message that never comes) until killed.
#[pool_task]
fn wait_forever(ready: Queue<u32>, block: Queue<u32>) {
    ready.put(&std::process::id()).unwrap();
    let _ = block.get();
}

#[multiproc::test]
fn exit_codes_follow_python() {
    let p = Process::new(nothing, ()).unwrap();
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(p.pid().is_some());
    assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());

    let p = Process::spawn(exit_with, (7,)).unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Code(7));

    let p = Process::spawn(panics, ()).unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Code(1));
    assert_eq!(p.exitcode(), Some(1));
}

#[multiproc::test]
fn terminate_and_kill() {
    let ready = Queue::new().unwrap();
    let block = Queue::new().unwrap();
    let t = Process::spawn(wait_forever, (ready.clone(), block.clone())).unwrap();
    let k = Process::spawn(wait_forever, (ready.clone(), block.clone())).unwrap();
    let mut pids = [ready.get().unwrap(), ready.get().unwrap()];
    pids.sort_unstable();
    let mut expect = [t.pid().unwrap(), k.pid().unwrap()];
    expect.sort_unstable();
    assert_eq!(pids, expect);
    assert!(t.is_alive() && k.is_alive());
    assert_eq!(t.join_timeout(Duration::from_millis(10)).unwrap(), None);
    assert_eq!(t.exitcode(), None);
    t.terminate().unwrap();
    k.kill().unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), Some(ExitStatus::Signal(15)));
    assert_eq!(k.join().unwrap(), ExitStatus::Signal(9));
    assert_eq!((t.exitcode(), k.exitcode()), (Some(-15), Some(-9)));
    // Signalling a finished process is harmless.
    t.kill().unwrap();
}

#[multiproc::test]
fn misuse_is_an_error() {
    let ready = Queue::new().unwrap();
    let block = Queue::<u32>::new().unwrap();
    let p = Process::new(wait_forever, (ready.clone(), block.clone())).unwrap();
    assert!(matches!(p.join(), Err(Error::ProcessState(_))));
    assert!(matches!(p.terminate(), Err(Error::ProcessState(_))));
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::ProcessState(_))));
    assert!(matches!(p.set_daemon(true), Err(Error::ProcessState(_))));
    ready.get().unwrap();
    assert!(matches!(p.close(), Err(Error::ProcessState(_))));
    block.put(&0).unwrap();
    p.join().unwrap();
    p.close().unwrap();
    assert!(matches!(p.join(), Err(Error::ProcessState(_))));
    assert!(matches!(
        Process::new(|| (), ()),
        Err(Error::UnregisteredTask { .. })
    ));
}

#[pool_task]
fn report_identity(out: Queue<(ProcessInfo, Option<ProcessInfo>)>) {
    out.put(&(multiproc::current_process(), multiproc::parent_process()))
        .unwrap();
}

#[multiproc::test]
fn names_pids_and_parent() {
    let q = Queue::new().unwrap();
    let p = Process::new(report_identity, (q.clone(),))
        .unwrap()
        .with_name("reporter")
        .with_daemon(true);
    assert_eq!(p.name(), "reporter");
    assert!(p.daemon());
    p.start().unwrap();
    let (me, parent) = q.get().unwrap();
    p.join().unwrap();
    assert_eq!(me.name, "reporter");
    assert_eq!(Some(me.pid), p.pid());
    assert!(me.daemon);
    let parent = parent.unwrap();
    assert_eq!(parent.pid, std::process::id());
    assert_eq!(parent.name, "MainProcess");
    assert_eq!(multiproc::current_process().name, "MainProcess");
    assert!(multiproc::parent_process().is_none());
    assert!(Process::new(nothing, ())
        .unwrap()
        .name()
        .starts_with("Process-"));
}

#[pool_task]
fn put_index(q: Queue<u32>, i: u32) {
    q.put(&i).unwrap();
}

#[multiproc::test]
fn a_hundred_children_at_once() {
    let q = Queue::new().unwrap();
    let procs: Vec<Process> = (0..100)
        .map(|i| Process::spawn(put_index, (q.clone(), i)).unwrap())
        .collect();
    let mut got: Vec<u32> = (0..100).map(|_| q.get_timeout(LONG).unwrap()).collect();
    for p in &procs {
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    }
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    // Other tests run concurrently: look only at ours.
    let mine: Vec<Option<u32>> = procs.iter().map(Process::pid).collect();
    assert!(!multiproc::active_children()
        .iter()
        .any(|c| mine.contains(&c.pid())));
}

/// Starts a daemon and a non-daemon grandchild, reports their pids and returns: the exit
/// hook must terminate the daemon and wait for the other.
#[pool_task]
fn parent_of_two(report: Queue<(u32, u32)>, release: Queue<u32>, done: Queue<u32>) {
    let ready = Queue::new().unwrap();
    let block = Queue::<u32>::new().unwrap();
    let daemon = Process::new(wait_forever, (ready.clone(), block))
        .unwrap()
        .with_daemon(true);
    daemon.start().unwrap();
    let worker = Process::spawn(relay, (release, done)).unwrap();
    ready.get().unwrap();
    assert_eq!(multiproc::active_children().len(), 2);
    report
        .put(&(daemon.pid().unwrap(), worker.pid().unwrap()))
        .unwrap();
}

#[pool_task]
fn relay(from: Queue<u32>, to: Queue<u32>) {
    let v = from.get().unwrap();
    to.put(&(v + 1)).unwrap();
}

#[multiproc::test]
fn grandchildren_daemons_and_exit() {
    let report = Queue::new().unwrap();
    let release = Queue::new().unwrap();
    let done = Queue::new().unwrap();
    let p = Process::spawn(
        parent_of_two,
        (report.clone(), release.clone(), done.clone()),
    )
    .unwrap();
    let (daemon_pid, worker_pid) = report.get_timeout(LONG).unwrap();
    // The child has returned from its task but waits for its non-daemon child at exit.
    assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
    release.put(&41).unwrap();
    assert_eq!(done.get_timeout(LONG).unwrap(), 42);
    assert_eq!(p.join_timeout(LONG).unwrap(), Some(ExitStatus::Code(0)));
    assert!(
        common::wait_exit(daemon_pid, LONG),
        "daemon grandchild still running"
    );
    assert!(common::wait_exit(worker_pid, LONG));
}

#[pool_task]
fn start_grandchild_and_wait(report: Queue<u32>) {
    let ready = Queue::new().unwrap();
    let block = Queue::<u32>::new().unwrap();
    let g = Process::spawn(wait_forever, (ready.clone(), block)).unwrap();
    report.put(&ready.get().unwrap()).unwrap();
    let _ = g.join();
}

#[multiproc::test]
fn children_exit_when_their_parent_is_killed() {
    let report = Queue::new().unwrap();
    let p = Process::spawn(start_grandchild_and_wait, (report.clone(),)).unwrap();
    let grandchild = report.get_timeout(LONG).unwrap();
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Signal(9));
    assert!(
        common::wait_exit(grandchild, LONG),
        "grandchild {grandchild} outlived its killed parent"
    );
}

#[multiproc::test]
fn active_children_lists_running_ones() {
    let ready = Queue::new().unwrap();
    let block = Queue::new().unwrap();
    let p = Process::spawn(wait_forever, (ready.clone(), block.clone())).unwrap();
    ready.get().unwrap();
    let active = multiproc::active_children();
    assert!(active.iter().any(|c| c.pid() == p.pid()));
    block.put(&1).unwrap();
    p.join().unwrap();
    assert!(!multiproc::active_children()
        .iter()
        .any(|c| c.pid() == p.pid()));
}

#[pool_task]
fn square_in_a_pool(x: u64) -> u64 {
    x * x
}

/// Starts a pool of its own: a forked child is a program, not a worker.
#[pool_task]
fn use_a_pool(out: Queue<u64>) {
    let pool = Pool::new(2).unwrap();
    out.put(&pool.map(square_in_a_pool, 1..4u64).unwrap().iter().sum())
        .unwrap();
}

#[multiproc::test]
fn processes_forked_by_the_fork_server_behave_as_spawned_ones() {
    let fork = |p: Process| p.with_start_method(StartMethod::ForkServer);
    // Exit codes and panics.
    let p = fork(Process::new(exit_with, (7,)).unwrap());
    p.start().unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), Some(ExitStatus::Code(7)));
    let p = fork(Process::new(panics, ()).unwrap());
    p.start().unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), Some(ExitStatus::Code(1)));
    // Identity: its own pid and name, this process as parent.
    let q = Queue::new().unwrap();
    let p = fork(Process::new(report_identity, (q.clone(),)).unwrap()).with_name("forked");
    p.start().unwrap();
    let (me, parent) = q.get_timeout(LONG).unwrap();
    p.join_timeout(LONG).unwrap();
    assert_eq!((me.name.as_str(), Some(me.pid)), ("forked", p.pid()));
    assert_ne!(me.pid, std::process::id());
    assert_eq!(parent.unwrap().pid, std::process::id());
    // Signals.
    let ready = Queue::new().unwrap();
    let block = Queue::<u32>::new().unwrap();
    let t = fork(Process::new(wait_forever, (ready.clone(), block.clone())).unwrap());
    let k = fork(Process::new(wait_forever, (ready.clone(), block.clone())).unwrap());
    t.start().unwrap();
    k.start().unwrap();
    ready.get_timeout(LONG).unwrap();
    ready.get_timeout(LONG).unwrap();
    assert!(t.is_alive() && k.is_alive());
    t.terminate().unwrap();
    k.kill().unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), Some(ExitStatus::Signal(15)));
    assert_eq!(k.join_timeout(LONG).unwrap(), Some(ExitStatus::Signal(9)));
    // Children of its own: a pool.
    let out = Queue::new().unwrap();
    let p = fork(Process::new(use_a_pool, (out.clone(),)).unwrap());
    p.start().unwrap();
    assert_eq!(out.get_timeout(LONG).unwrap(), 1 + 4 + 9);
    assert_eq!(p.join_timeout(LONG).unwrap(), Some(ExitStatus::Code(0)));
}
