//! Running a task in whatever process it lands in: the dispatcher every `#[pool_task]`
//! instantiates (`run_chunk`), the capture of its panics, and tasks as values (`Task`,
//! `AnyTask`, `TaskCall`).

mod handle;
pub(crate) mod panic;
mod run;

pub use handle::{AnyTask, Task, TaskCall};
pub use run::{run_chunk, Par, ParNone, ParRun};
pub(crate) use run::{run_job, threads_for};
