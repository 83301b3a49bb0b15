//! A program that forgets `#[multiproc::main]`: the parent gets a clear error at once, and a
//! worker whose `main` never calls `init()` neither hangs the parent nor spawns pools of its
//! own. A plain `main` (harness = false), since the point is the missing attribute.

use multiproc::prelude::*;

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

const ROLE: &str = "MULTIPROC_TEST_FORGOT_ROLE";

/// This binary's one test, by the name test runners see.
const NAME: &str = "forgot_main";

fn main() {
    // Answer test runners as libtest would: `--list` (cargo nextest lists every binary
    // first, then runs each test as `<name> --exact`), and a filter that names another test.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("{NAME}: test");
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if std::env::var_os(ROLE).is_none() && filters.iter().any(|f| !NAME.contains(f.as_str())) {
        println!("forgot_main: 0 passed (filtered out)");
        return;
    }
    if std::env::var_os(ROLE).is_some() {
        // Re-executed as a worker, but this main "forgot" init(): its own code runs, and
        // must not be able to start a pool recursively.
        match Pool::new(2) {
            Err(Error::NotInitialized(msg)) => {
                assert!(msg.contains("started as a multiproc worker"), "{msg}");
                std::process::exit(42);
            }
            other => {
                eprintln!("a forgetful worker could start a pool: {other:?}");
                std::process::exit(1);
            }
        }
    }

    // 1. The parent never called init(): refused at once, with the fix in the message.
    match Pool::new(2) {
        Err(Error::NotInitialized(msg)) => assert!(msg.contains("#[multiproc::main]"), "{msg}"),
        other => panic!("expected NotInitialized, got {other:?}"),
    }
    // Shared memory still works, without its tracker: a tracker re-executing this program
    // would run this main again instead (which would start a tracker of its own, and so on).
    {
        let block = multiproc::SharedMemory::create(4096).expect("a block without init");
        let list = multiproc::ShareableList::new([1i64.into()]).expect("a list without init");
        assert_eq!(list.get(0).expect("read"), multiproc::ShareableItem::Int(1));
        let children =
            std::fs::read_to_string(format!("/proc/self/task/{}/children", std::process::id()))
                .unwrap_or_default();
        assert!(children.trim().is_empty(), "a helper started: {children}");
        drop(block);
    }

    // 2. The parent called init() late, so its workers run main's code instead of serving.
    multiproc::init();
    // SAFETY: single-threaded here; the variable tells the re-executed child its role.
    unsafe { std::env::set_var(ROLE, "child") };
    match Pool::new(2) {
        Err(Error::WorkerStart(msg)) => {
            assert!(msg.contains("exited with code 42"), "{msg}");
            assert!(msg.contains("multiproc::init()"), "{msg}");
        }
        other => panic!("expected WorkerStart, got {other:?}"),
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var(ROLE) };
    let _ = square(2);
    println!("forgot_main: 2 passed, 0 failed");
}
