//! The process pool's `imap` feeder: encodes the next chunks of the input as RUN frames.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::sched::{Job, Shared};
use crate::exec::imap::{Feeder, Inbox};
use crate::exec::options::Policy;
use crate::wire::codec;

/// The process pool's feeder: encodes chunks of the input as RUN frames.
pub(crate) fn process_feeder<'p, A, R>(
    shared: &'p Arc<Shared>,
    (task, policy): (&'static str, Policy),
    mut input: impl Iterator<Item = A> + 'p,
    chunksize: usize,
    inbox: Arc<Inbox<R>>,
) -> Feeder<'p>
where
    A: Serialize + 'p,
    R: DeserializeOwned + Send + 'static,
{
    Box::new(move |first_part, max| {
        let mut jobs = Vec::with_capacity(max.min(1024));
        let mut used = 0;
        let mut done = false;
        while used < max {
            let chunk: Vec<A> = input.by_ref().take(chunksize).collect();
            if chunk.is_empty() {
                done = true;
                break;
            }
            let part = first_part + used;
            used += 1;
            let id = shared.next_job_id();
            match codec::run_frame(id, task, &chunk) {
                Ok(mut run) => {
                    run.set_may_delay();
                    jobs.push(
                        Job::new(id, task, run, chunk.len(), part, inbox.clone())
                            .with_policy(policy),
                    );
                }
                // This chunk cannot be sent: its items fail at their position.
                Err(e) => inbox.fail(part, chunk.len(), &e),
            }
        }
        let parts: Vec<(usize, usize)> = jobs.iter().map(|j| (j.part, j.items)).collect();
        if !jobs.is_empty() {
            if let Err(e) = shared.submit(jobs) {
                for (part, items) in parts {
                    inbox.fail(part, items, &e);
                }
            }
        }
        (used, done)
    })
}
