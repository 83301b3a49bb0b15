//! `imap` and `imap_unordered`: lazy iterators with a bounded window of chunks in flight, so
//! an endless input runs in constant memory, and dropping the iterator cancels what has not
//! started.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::result::decode_items;
use super::shared::{Job, JobDone, Shared, Sink};
use crate::error::{Error, Result};
use crate::wire::codec;

struct Inbox<R> {
    /// Finished chunks by part number (ordered) or in completion order (unordered).
    by_part: HashMap<usize, Vec<Result<R>>>,
    arrived: VecDeque<Vec<Result<R>>>,
}

struct ImapShared<R> {
    inbox: Mutex<Inbox<R>>,
    cond: Condvar,
    cancelled: AtomicBool,
    ordered: bool,
}

impl<R> ImapShared<R> {
    fn deliver(&self, part: usize, items: Vec<Result<R>>) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if self.ordered {
            inbox.by_part.insert(part, items);
        } else {
            inbox.arrived.push_back(items);
        }
        self.cond.notify_all();
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for ImapShared<R> {
    fn complete(&self, done: JobDone) {
        let part = done.part;
        self.deliver(part, decode_items::<R>(done));
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Lazy results of `imap` (in input order) or `imap_unordered` (in completion order).
///
/// Each item is a `Result`: a task that panicked yields its error at its position and the
/// iteration goes on. At most a fixed window of chunks is in flight or buffered, whatever
/// the input's length. Dropping the iterator early cancels the chunks not yet started.
pub struct Imap<'p, R> {
    shared: &'p Arc<Shared>,
    task: &'static str,
    /// Encoded chunks and their lengths.
    input: Box<dyn Iterator<Item = (Result<Vec<u8>>, usize)> + 'p>,
    chunksize: usize,
    window: usize,
    timeout: Option<Duration>,
    sink: Arc<ImapShared<R>>,
    submitted: usize,
    yielded: usize,
    input_done: bool,
    current: VecDeque<Result<R>>,
    _r: PhantomData<fn() -> R>,
}

impl<'p, R: DeserializeOwned + Send + 'static> Imap<'p, R> {
    pub(crate) fn new<A: Serialize + 'p>(
        shared: &'p Arc<Shared>,
        task: &'static str,
        input: impl Iterator<Item = A> + 'p,
        chunksize: usize,
        timeout: Option<Duration>,
        ordered: bool,
    ) -> Self {
        let mut input = input;
        let chunks = std::iter::from_fn(move || {
            let chunk: Vec<A> = input.by_ref().take(chunksize).collect();
            if chunk.is_empty() {
                return None;
            }
            Some((codec::run_frame(0, task, &chunk), chunk.len()))
        });
        // Enough chunks to keep every worker's pipeline full, and a constant bound.
        let window = shared.config.processes * 32;
        Imap {
            shared,
            task,
            input: Box::new(chunks),
            chunksize,
            window,
            timeout,
            sink: Arc::new(ImapShared {
                inbox: Mutex::new(Inbox {
                    by_part: HashMap::new(),
                    arrived: VecDeque::new(),
                }),
                cond: Condvar::new(),
                cancelled: AtomicBool::new(false),
                ordered,
            }),
            submitted: 0,
            yielded: 0,
            input_done: false,
            current: VecDeque::new(),
            _r: PhantomData,
        }
    }

    /// Submits chunks until the window is full or the input ends. Waits until half the
    /// window is free, so chunks go out in batches rather than one per item consumed.
    fn top_up(&mut self) {
        let in_flight = self.submitted - self.yielded;
        if in_flight > 0 && in_flight > self.window / 2 {
            return;
        }
        let mut jobs = Vec::new();
        while !self.input_done && self.submitted - self.yielded + jobs.len() < self.window {
            let part = self.submitted + jobs.len();
            match self.input.next() {
                None => self.input_done = true,
                Some((Ok(mut frame), items)) => {
                    let id = self.shared.next_job_id();
                    codec::set_job_id(&mut frame, id);
                    codec::set_may_delay(&mut frame);
                    jobs.push(Job {
                        id,
                        task: self.task,
                        frame,
                        items,
                        part,
                        sink: self.sink.clone(),
                    });
                }
                Some((Err(e), items)) => {
                    // This chunk cannot be sent: its items fail at their position.
                    self.submit(std::mem::take(&mut jobs));
                    self.sink
                        .deliver(self.submitted, (0..items).map(|_| Err(e.clone())).collect());
                    self.submitted += 1;
                }
            }
        }
        self.submit(jobs);
    }

    fn submit(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let n = jobs.len();
        let first = self.submitted;
        let sizes: Vec<usize> = jobs.iter().map(|j| j.items).collect();
        if let Err(e) = self.shared.submit(jobs) {
            for (i, items) in sizes.into_iter().enumerate() {
                self.sink
                    .deliver(first + i, (0..items).map(|_| Err(e.clone())).collect());
            }
        }
        self.submitted += n;
    }

    fn wait_next_chunk(&mut self) -> Option<Result<Vec<Result<R>>>> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let mut inbox = self.sink.inbox.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let got = if self.sink.ordered {
                inbox.by_part.remove(&self.yielded)
            } else {
                inbox.arrived.pop_front()
            };
            if let Some(items) = got {
                return Some(Ok(items));
            }
            inbox = match deadline {
                None => self
                    .sink
                    .cond
                    .wait(inbox)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Some(Err(Error::Timeout));
                    }
                    self.sink
                        .cond
                        .wait_timeout(inbox, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for Imap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(item) = self.current.pop_front() {
                return Some(item);
            }
            self.top_up();
            if self.submitted == self.yielded && self.input_done {
                return None;
            }
            match self.wait_next_chunk()? {
                Ok(items) => {
                    self.yielded += 1;
                    self.current.extend(items);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        self.sink.cancelled.store(true, Ordering::Relaxed);
    }
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("task", &self.task)
            .field("chunksize", &self.chunksize)
            .field("in_flight", &(self.submitted - self.yielded))
            .finish()
    }
}
