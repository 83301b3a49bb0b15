//! Panic capture in workers: the message, its location and (when enabled) a backtrace go
//! back to the parent inside the task's error instead of being printed by the worker.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};

use crate::wire::codec::PanicInfo;

thread_local! {
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    static LAST: RefCell<Option<PanicInfo>> = const { RefCell::new(None) };
}

/// Installs the hook once per worker; panics outside tasks still print as usual.
pub(crate) fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_TASK.with(Cell::get) {
            default(info);
            return;
        }
        let message = payload_message(info.payload());
        let message = match info.location() {
            Some(loc) => format!("{message} (at {}:{})", loc.file(), loc.line()),
            None => message,
        };
        let bt = Backtrace::capture();
        let backtrace = (bt.status() == BacktraceStatus::Captured).then(|| bt.to_string());
        LAST.with(|l| *l.borrow_mut() = Some(PanicInfo { message, backtrace }));
    }));
}

/// The text of a panic payload (`&str` or `String`), as Rust's own hook prints it.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any> (a non-string panic payload)".to_owned()
    }
}

/// Marks the current thread as running a task while `f` runs (tasks may nest: a barrier's
/// action runs inside the task that arrived last).
pub(crate) fn in_task<R>(f: impl FnOnce() -> R) -> R {
    let outer = IN_TASK.with(|c| c.replace(true));
    let r = f();
    IN_TASK.with(|c| c.set(outer));
    r
}

/// Whether this thread is inside a task.
pub(crate) fn running_task() -> bool {
    IN_TASK.with(Cell::get)
}

/// What the hook recorded for the panic whose payload is `payload`.
pub(crate) fn take(payload: Box<dyn Any + Send>) -> PanicInfo {
    LAST.with(|l| l.borrow_mut().take())
        .unwrap_or_else(|| PanicInfo {
            message: payload_message(&*payload),
            backtrace: None,
        })
}
