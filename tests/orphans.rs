//! Workers die with their parent, even when the parent is SIGKILLed and cannot clean up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::prelude::*;

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

const ROLE: &str = "MULTIPROC_TEST_ORPHANS_ROLE";

#[multiproc::test]
fn workers_die_when_their_parent_is_killed() {
    if std::env::var_os(ROLE).is_some() {
        return doomed_parent();
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "workers_die_when_their_parent_is_killed",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "parent")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the doomed parent ended early"
        );
        // libtest may print its "test name ... " prefix on the same line.
        if let Some(at) = line.find("DESCENDANTS ") {
            line = line[at + "DESCENDANTS ".len()..].to_owned();
            break;
        }
    }
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // Two spawned workers, two forked workers and their fork server.
    assert!(pids.len() >= 5, "descendants: {pids:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    for pid in pids {
        assert!(
            common::wait_exit(pid, Duration::from_secs(60)),
            "process {pid} outlived its killed parent"
        );
    }
}

fn doomed_parent() {
    let spawned = Pool::new(2).unwrap();
    let forked = Pool::builder()
        .processes(2)
        .start_method(StartMethod::ForkServer)
        .build()
        .unwrap();
    assert_eq!(spawned.apply(square, (3,)).unwrap(), 9);
    assert_eq!(forked.apply(square, (4,)).unwrap(), 16);
    let me = std::process::id();
    let mut all = common::children_of(me);
    for c in all.clone() {
        all.extend(common::children_of(c));
    }
    let list: Vec<String> = all.iter().map(u32::to_string).collect();
    println!("DESCENDANTS {}", list.join(" "));
    // Wait to be killed; bounded so a broken test cannot hang forever.
    std::thread::sleep(Duration::from_secs(300));
}
