//! Running a task in whatever process it lands in: the dispatcher every `#[pool_task]`
//! instantiates (`run_chunk`), and the capture of its panics.

pub(crate) mod panic;
mod run;

pub use run::run_chunk;
