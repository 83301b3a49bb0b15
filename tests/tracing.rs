//! The library's `tracing` events, seen by a subscriber written here: pool start and stop,
//! workers started, a worker killed (with its pid and signal), a lost task retried, a task
//! error. Without a subscriber nothing is printed (the rest of the suite runs without one).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const LONG: Duration = Duration::from_secs(120);

/// Keeps every event as "target: message k=v ...".
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut line = format!("{}:", e.metadata().target());
        e.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[pool_task]
fn pid_then_wait(report: multiproc::Queue<u32>, go: multiproc::Event) -> u32 {
    report.put(&std::process::id()).unwrap();
    assert!(go.wait_timeout(LONG).unwrap());
    7
}

#[pool_task]
fn refuse(x: u32) -> u32 {
    assert!(x > 0, "refused");
    x
}

#[multiproc::test]
fn pool_life_and_faults_are_traced() {
    let events = Collect::default();
    tracing::subscriber::set_global_default(events.clone()).unwrap();
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    let report = multiproc::Queue::new().unwrap();
    let go = multiproc::Event::new().unwrap();
    let r = pool
        .apply_async(pid_then_wait, (report.clone(), go.clone()))
        .unwrap();
    // Kill the worker running it: the task is retried on another.
    let victim = report.get_timeout(LONG).unwrap();
    // SAFETY: plain syscall on a worker of this pool.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let again = report.get_timeout(LONG).unwrap();
    assert_ne!(again, victim);
    go.set();
    assert_eq!(r.get().unwrap(), 7);
    assert!(pool.apply(refuse, (0,)).is_err());
    drop(pool);
    let lines = events.0.lock().unwrap().clone();
    let has = |what: &[&str]| lines.iter().any(|l| what.iter().all(|w| l.contains(w)));
    assert!(
        has(&["multiproc::pool:", "pool started", "processes=2"]),
        "{lines:#?}"
    );
    assert!(
        has(&["worker started", &format!("pid={victim}")]),
        "{lines:#?}"
    );
    assert!(
        has(&["worker died", &format!("pid={victim}"), "signal=Some(9)"]),
        "{lines:#?}"
    );
    assert!(
        has(&["retrying", &format!("pid={victim}"), "attempt=1"]),
        "{lines:#?}"
    );
    assert!(
        has(&["multiproc::task:", "task failed", "refused"]),
        "{lines:#?}"
    );
    assert!(has(&["pool closing"]), "{lines:#?}");
}
