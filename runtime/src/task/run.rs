//! The dispatcher every `#[pool_task]` instantiates for its own argument tuple.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::registry::TaskFn;
use crate::wire::codec;

/// Decodes a chunk of argument tuples, calls `f` on each under `catch_unwind`, and appends
/// one outcome per item to `out`. Used by the code `#[pool_task]` generates.
#[doc(hidden)]
pub fn run_chunk<Args, F>(input: &[u8], out: &mut Vec<u8>, f: F) -> Result<(), String>
where
    Args: DeserializeOwned,
    F: TaskFn<Args>,
    F::Output: Serialize,
{
    let args: Vec<Args> = crate::wire::serial::decode(input).map_err(|e| e.to_string())?;
    // Only the job the worker runs reports its items: a task nested inside another (a
    // barrier's action) must not move the mark the parent reads if the worker dies.
    let outermost = !super::panic::running_task();
    for (i, a) in args.into_iter().enumerate() {
        if outermost && i > 0 {
            crate::shm::lane::mark_item(i);
        }
        let outcome = super::panic::in_task(|| catch_unwind(AssertUnwindSafe(|| f.call(a))));
        match outcome {
            Ok(r) => codec::push_ok(out, &r),
            Err(payload) => codec::push_panic(out, &super::panic::take(payload)),
        }
    }
    Ok(())
}
