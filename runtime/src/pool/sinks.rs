//! How the process pool's finished jobs reach the backend-neutral results: decoding a job's
//! outcomes into the `AsyncResult` of an `apply`, the collector of a `map`, or an `imap`'s
//! inbox.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::job::{decode_items, decode_values_into, JobDone, Sink};
use crate::error::Error;
use crate::exec::imap::Inbox;
use crate::exec::options::Callbacks;
use crate::exec::result::{Cell, MapSink};

/// Sink of a single call.
pub(crate) struct ApplySink<R> {
    pub cell: Arc<Cell<R>>,
    pub callbacks: Callbacks<R>,
}

impl<R: DeserializeOwned + Send + 'static> Sink for ApplySink<R> {
    fn complete(&self, done: JobDone<'_>) {
        let value = decode_items::<R>(done)
            .pop()
            .unwrap_or_else(|| Err(Error::Protocol("no outcome for a single call".into())));
        self.cell.set(value, &self.callbacks);
    }
    fn claim(&self) -> bool {
        self.cell.claim()
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for MapSink<R> {
    fn complete(&self, done: JobDone<'_>) {
        let (part, items) = (done.part, done.items);
        self.complete_with(part, items, |list| decode_values_into(done, list));
    }
    fn claim(&self) -> bool {
        self.cell.claim()
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Inbox<R> {
    fn complete(&self, done: JobDone<'_>) {
        let part = done.part;
        self.deliver(part, decode_items::<R>(done));
    }
    fn is_cancelled(&self) -> bool {
        Inbox::is_cancelled(self)
    }
}
