//! Tasks as values (`Task`, `AnyTask`, `TaskCall`), through real worker processes: handles
//! are accepted wherever a task function is, travel inside arguments, queue items and
//! structs, and a handle that does not match this executable is a clear error.

use std::collections::HashSet;
use std::time::Duration;

use multiproc::prelude::*;
use multiproc::AnyTask;
use serde::{Deserialize, Serialize};

#[pool_task]
fn mul(a: i64, b: i64) -> i64 {
    a * b
}

#[pool_task]
fn plus(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
fn shout(word: String) -> String {
    word.to_uppercase()
}

#[pool_task]
fn explode(x: u32) -> u32 {
    panic!("explode got {x}");
}

#[pool_task]
fn pid() -> u32 {
    std::process::id()
}

/// Calls the handle it is given, in the worker.
#[pool_task]
fn call_remote(f: Task<(i64, i64), i64>, args: (i64, i64)) -> (u32, String, i64) {
    (std::process::id(), f.name().to_owned(), f.call(args))
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Step {
    label: String,
    op: Task<(i64, i64), i64>,
    args: (i64, i64),
}

#[pool_task]
fn run_steps(steps: Vec<Step>) -> Vec<(String, i64)> {
    steps
        .into_iter()
        .map(|s| (s.label, s.op.call(s.args)))
        .collect()
}

#[pool_task]
fn drain(q: Queue<Option<TaskCall>>, out: Queue<String>) {
    while let Ok(Some(call)) = q.get() {
        let r = match call.run::<i64>() {
            Ok(v) => v.to_string(),
            Err(e) => format!("error: {e}"),
        };
        out.put(&format!("{}={r}", call.task().short_name()))
            .unwrap();
    }
}

#[pool_task]
fn note_pid(seen: Queue<u32>) {
    seen.put(&std::process::id()).unwrap();
}

#[pool_task]
fn bump_shared() {
    if let Some(v) = SHARED.get() {
        *v.lock().unwrap() += 1;
    }
}

static SHARED: std::sync::OnceLock<Value<u32>> = std::sync::OnceLock::new();

#[pool_task]
fn install(v: Value<u32>) {
    let _ = SHARED.set(v);
}

#[pool_task]
fn boom(a: i64, _b: i64) -> i64 {
    panic!("boom {a}");
}

fn not_a_task(a: i64, b: i64) -> i64 {
    a - b
}

#[test]
fn a_handle_is_copy_comparable_hashable_and_named() {
    let m = Task::of(mul);
    let m2 = m;
    assert_eq!(m, m2);
    assert_ne!(m, Task::of(plus));
    assert_eq!(m.name(), "task_values::mul");
    assert_eq!(m.short_name(), "mul");
    assert_eq!(format!("{m:?}"), "Task(task_values::mul)");
    let set: HashSet<_> = [m, m2, Task::of(plus)].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert_eq!(m.call((6, 7)), 42);
    let any = m.erase();
    assert_eq!(any, AnyTask::from(m2));
    assert!(any.is::<(i64, i64), i64>());
    assert!(!any.is::<(String,), String>());
    assert_eq!(any.signature(), ("(i64, i64)", "i64"));
    assert!(format!("{any:?}").contains("task_values::mul: (i64, i64) -> i64"));
}

#[test]
fn a_plain_function_has_no_handle() {
    let e = Task::try_of(not_a_task).unwrap_err();
    assert!(
        matches!(&e, Error::UnregisteredTask { name } if name.contains("not_a_task")),
        "{e:?}"
    );
    let caught = std::panic::catch_unwind(|| Task::of(not_a_task));
    assert!(caught.is_err());
}

#[test]
fn typed_refuses_another_signature_naming_both() {
    let any = Task::of(shout).erase();
    let e = any.typed::<(i64, i64), i64>().unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("task_values::shout") && msg.contains("(i64, i64) -> i64"),
        "{msg}"
    );
    assert!(msg.contains("String"), "{msg}");
    let back: Task<(String,), String> = any.typed().unwrap();
    assert_eq!(back.call(("a".into(),)), "A");
}

#[multiproc::test]
fn pools_and_processes_take_a_handle_wherever_they_take_the_function() {
    let pool = Pool::new(2).unwrap();
    let m = Task::of(mul);
    assert_eq!(pool.apply(m, (6, 7)).unwrap(), 42);
    assert_eq!(pool.apply_async(m, (2, 3)).unwrap().get().unwrap(), 6);
    assert_eq!(pool.starmap(m, vec![(1, 2), (3, 4)]).unwrap(), [2, 12]);
    let s = Task::of(shout);
    assert_eq!(
        pool.map(Task::of(shout), vec!["a".to_string()]).unwrap(),
        ["A"]
    );
    let v: Vec<String> = pool
        .imap(s, vec!["x".to_string(), "y".to_string()])
        .unwrap()
        .collect::<multiproc::Result<_>>()
        .unwrap();
    assert_eq!(v, ["X", "Y"]);
    // A panicking task behind a handle is that item's error, as with the function.
    let e = pool.apply(Task::of(explode), (3,)).unwrap_err();
    assert!(
        matches!(&e, Error::TaskPanicked { message, .. } if message.contains("explode got 3")),
        "{e:?}"
    );
    let worker = pool.apply(Task::of(pid), ()).unwrap();
    assert_ne!(worker, std::process::id());

    // Process, initializer, barrier action.
    let seen = Queue::new().unwrap();
    let p = Process::spawn(Task::of(note_pid), (seen.clone(),)).unwrap();
    assert!(p.join().unwrap().success());
    assert_eq!(Some(seen.get().unwrap()), p.pid());

    let hits = Value::new(0u32).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(Task::of(install), (hits.clone(),))
        .build()
        .unwrap();
    pool.apply(Task::of(bump_shared), ()).unwrap();
    assert_eq!(hits.get().unwrap(), 1);

    // A barrier action behind a handle runs (a panicking one breaks the barrier).
    let b = Barrier::with_action(1, Task::of(quiet_action)).unwrap();
    assert_eq!(b.wait_timeout(Duration::from_secs(60)).unwrap(), 0);
    let b = Barrier::with_action(1, Task::of(failing_action)).unwrap();
    let e = b.wait_timeout(Duration::from_secs(60)).unwrap_err();
    assert!(
        matches!(&e, Error::TaskPanicked { message, .. } if message.contains("the action fails")),
        "{e:?}"
    );
    assert!(b.broken());
}

#[pool_task]
fn quiet_action() {}

#[pool_task]
fn failing_action() {
    panic!("the action fails");
}

#[multiproc::test]
fn the_thread_pool_takes_handles_too() {
    let pool = multiproc::dummy::Pool::new(2).unwrap();
    assert_eq!(pool.apply(Task::of(plus), (1, 2)).unwrap(), 3);
    assert_eq!(pool.starmap(Task::of(mul), vec![(2, 2)]).unwrap(), [4]);
}

#[multiproc::test]
fn handles_travel_in_arguments_structs_and_queues() {
    let pool = Pool::new(2).unwrap();
    let (wpid, name, r) = pool.apply(call_remote, (Task::of(plus), (40, 2))).unwrap();
    assert_ne!(wpid, std::process::id());
    assert_eq!((name.as_str(), r), ("task_values::plus", 42));

    let steps = vec![
        Step {
            label: "m".into(),
            op: Task::of(mul),
            args: (3, 3),
        },
        Step {
            label: "p".into(),
            op: Task::of(plus),
            args: (3, 3),
        },
    ];
    assert_eq!(
        pool.apply(run_steps, (steps,)).unwrap(),
        [("m".to_string(), 9), ("p".to_string(), 6)]
    );

    // (func, args) pairs of different signatures in one queue, then a stop marker.
    let jobs = Queue::new().unwrap();
    let out = Queue::new().unwrap();
    jobs.put(&Some(TaskCall::new(Task::of(mul), (6, 7)).unwrap()))
        .unwrap();
    jobs.put(&Some(
        TaskCall::new(Task::of(shout), ("no".to_string(),)).unwrap(),
    ))
    .unwrap();
    jobs.put(&Some(TaskCall::new(Task::of(boom), (9, 0)).unwrap()))
        .unwrap();
    jobs.put(&None).unwrap();
    let p = Process::spawn(drain, (jobs.clone(), out.clone())).unwrap();
    assert_eq!(out.get().unwrap(), "mul=42");
    let wrong = out.get().unwrap();
    assert!(
        wrong.starts_with("shout=error:") && wrong.contains("returns") && wrong.contains("String"),
        "{wrong}"
    );
    let boom = out.get().unwrap();
    assert!(
        boom.starts_with("boom=error:") && boom.contains("boom 9"),
        "{boom}"
    );
    assert!(p.join().unwrap().success());
}

#[test]
fn a_task_call_checks_types_before_running() {
    let call = TaskCall::new(Task::of(shout), ("hey".to_string(),)).unwrap();
    assert_eq!(call.run::<String>().unwrap(), "HEY");
    assert!(matches!(call.run::<i64>(), Err(Error::InvalidArgument(_))));
    assert_eq!(call.args::<(String,)>().unwrap(), ("hey".to_string(),));
    assert!(matches!(
        call.args::<(i64, i64)>(),
        Err(Error::InvalidArgument(_))
    ));
    let e = TaskCall::new(Task::of(explode), (1,))
        .unwrap()
        .run::<u32>()
        .unwrap_err();
    assert!(matches!(e, Error::TaskPanicked { .. }), "{e:?}");
}

/// What a handle looks like on the wire, to forge ones this executable does not have.
#[derive(Serialize)]
struct Forged<'a> {
    name: &'a str,
    args: &'a str,
    output: &'a str,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    type Cfg = wincode::config::Configuration<true, { usize::MAX }>;
    let mut out = Vec::new();
    v.serialize(serde_wincode::Serializer::<_, Cfg>::new(&mut out))
        .unwrap();
    out
}

#[multiproc::test]
fn a_handle_this_executable_cannot_honour_is_a_clear_error() {
    let (rx, tx) = multiproc::pipe_oneway::<AnyTask>().unwrap();
    let unknown = Forged {
        name: "elsewhere::gone",
        args: "()",
        output: "()",
    };
    tx.send_bytes(&encode(&unknown)).unwrap();
    let e = rx.recv().unwrap_err();
    assert!(
        matches!(&e, Error::Serialization { message, .. } if message.contains("elsewhere::gone") && message.contains("not a #[pool_task]")),
        "{e:?}"
    );
    // Registered, but the sender knew it by another signature (another build).
    let changed = Forged {
        name: "task_values::mul",
        args: "(i32, i32)",
        output: "i32",
    };
    tx.send_bytes(&encode(&changed)).unwrap();
    let e = rx.recv().unwrap_err();
    assert!(
        matches!(&e, Error::Serialization { message, .. } if message.contains("task_values::mul") && message.contains("(i32, i32) -> i32") && message.contains("(i64, i64) -> i64")),
        "{e:?}"
    );
    // A typed handle received as another type.
    let (rx, tx) = multiproc::pipe_oneway::<Task<(String,), String>>().unwrap();
    tx.send_bytes(&encode(&Task::of(mul))).unwrap();
    let e = rx.recv().unwrap_err();
    assert!(
        matches!(&e, Error::Serialization { message, .. } if message.contains("task_values::mul")),
        "{e:?}"
    );
    // And a good one goes through.
    let (rx, tx) = multiproc::pipe_oneway::<Task<(i64, i64), i64>>().unwrap();
    tx.send(&Task::of(plus)).unwrap();
    assert_eq!(rx.recv().unwrap().call((1, 1)), 2);
}

/// Python's `def greet(name, greeting="hello", times=1)`.
#[pool_task]
fn greet(
    name: String,
    #[default("hello".to_string())] greeting: String,
    #[default(1)] times: u32,
) -> String {
    vec![format!("{greeting} {name}"); times as usize].join(", ")
}

#[multiproc::test]
fn defaults_fill_what_the_caller_leaves_out_in_every_pool_and_process() {
    // The positional form is unchanged.
    assert_eq!(greet("a".into(), "yo".into(), 2), "yo a, yo a");
    let args = greet::args("b".into());
    assert_eq!((args.greeting.as_str(), args.times), ("hello", 1));
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.apply(greet::kw, greet::args("c".into())).unwrap(),
        "hello c"
    );
    assert_eq!(
        pool.apply(
            greet::kw,
            greet::args("d".into()).times(2).greeting("hi".into())
        )
        .unwrap(),
        "hi d, hi d"
    );
    let rows = pool
        .starmap(
            greet::kw,
            vec![
                greet::args("e".into()),
                greet::Args {
                    times: 3,
                    ..greet::args("f".into())
                },
            ],
        )
        .unwrap();
    assert_eq!(rows, ["hello e", "hello f, hello f, hello f"]);
    // The keyword form is a task like any: a handle, the thread pool, a call here.
    let t = Task::of(greet::kw);
    assert_eq!(t.name(), "task_values::greet::kw");
    assert_eq!(t.call(greet::args("g".into())), "hello g");
    let threads = multiproc::dummy::Pool::new(1).unwrap();
    assert_eq!(
        threads.apply(greet::kw, greet::args("h".into())).unwrap(),
        "hello h"
    );
    assert_eq!(pool.apply(t, greet::args("i".into()).times(0)).unwrap(), "");
}
