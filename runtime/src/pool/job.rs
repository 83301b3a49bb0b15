//! Jobs (a chunk of calls of one task, encoded and ready to write), their outcomes, and the
//! sinks that receive them — including the one that reassembles a chunk cut into pieces
//! after a worker died inside it.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::exec::options::Policy;
use crate::sys::wait::lock;
use crate::wire::codec::RunFrame;

/// How a job ended.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// A RESULT frame's body, and where its outcomes (one encoded outcome per item) start
    /// in it: after the job id. The frame is kept whole, not copied: borrowed from the
    /// reader's buffer while its sink completes, when the buffer held all of it.
    Body(Cow<'a, [u8]>, usize),
    /// Every item of the job failed with this error.
    Failed(Error),
    /// The job was cut into consecutive pieces (a worker died inside it): each piece's item
    /// count and outcome, in item order.
    Pieces(Vec<(usize, Outcome<'a>)>),
}

impl Outcome<'_> {
    /// The same outcome owning its bytes, to keep past the reader's next read.
    fn into_owned(self) -> Outcome<'static> {
        match self {
            Outcome::Body(body, at) => Outcome::Body(Cow::Owned(body.into_owned()), at),
            Outcome::Failed(e) => Outcome::Failed(e),
            Outcome::Pieces(pieces) => Outcome::Pieces(
                pieces
                    .into_iter()
                    .map(|(n, piece)| (n, piece.into_owned()))
                    .collect(),
            ),
        }
    }
}

/// A finished job, handed to its sink.
pub(crate) struct JobDone<'a> {
    pub task: &'static str,
    /// Position of the job within its call (chunk index).
    pub part: usize,
    pub items: usize,
    pub outcome: Outcome<'a>,
}

impl JobDone<'static> {
    pub(crate) fn failed(task: &'static str, part: usize, items: usize, e: Error) -> Self {
        JobDone {
            task,
            part,
            items,
            outcome: Outcome::Failed(e),
        }
    }
}

/// Receives the outcome of jobs; implemented by each kind of call.
pub(crate) trait Sink: Send + Sync {
    /// `done` may borrow the reader's buffer: what a sink keeps past its return, it copies.
    fn complete(&self, done: JobDone<'_>);
    /// A cancelled call's jobs that have not started are dropped instead of run.
    fn is_cancelled(&self) -> bool {
        false
    }
    /// A job of the call is about to be sent to a worker: false if the call was cancelled
    /// (the job is dropped instead). From then on the call can no longer be cancelled.
    fn claim(&self) -> bool {
        !self.is_cancelled()
    }
}

/// One unit of work: a chunk of calls of one task, ready to write.
pub(crate) struct Job {
    pub id: u64,
    pub task: &'static str,
    pub run: RunFrame,
    pub items: usize,
    pub part: usize,
    pub sink: Arc<dyn Sink>,
    /// The lane sequence number the job was last written under.
    pub seq: u32,
    /// Its call's `kill_after` and `retries`.
    pub policy: Policy,
    /// How many workers died running this job's first item (retries so far + 1 when lost).
    pub lost: u32,
    /// A worker died running this job's items in parallel: it runs again one item at a
    /// time, so that a second death names the item.
    pub alone: bool,
}

impl Job {
    pub(crate) fn new(
        id: u64,
        task: &'static str,
        run: RunFrame,
        items: usize,
        part: usize,
        sink: Arc<dyn Sink>,
    ) -> Job {
        Job {
            id,
            task,
            run,
            items,
            part,
            sink,
            seq: 0,
            policy: Policy::default(),
            lost: 0,
            alone: false,
        }
    }

    /// The same job under a call's policy.
    pub(crate) fn with_policy(mut self, policy: Policy) -> Job {
        self.policy = policy;
        self
    }

    pub(crate) fn fail(self, e: Error) {
        self.failure(e).deliver();
    }

    /// The job's failure with `e`, to deliver later.
    pub(crate) fn failure(self, e: Error) -> Delivery {
        Delivery {
            done: JobDone::failed(self.task, self.part, self.items, e),
            sink: self.sink,
        }
    }

    /// Cuts the job around item `lost`, which meets `fate`: the items before and after it
    /// become new jobs (ids from `next_id`) whose outcomes, with the lost item's in between,
    /// complete this job as one when they are all in. Returns the new jobs and, when the lost
    /// item fails, its failure, to deliver once the new jobs are queued. A retried item is
    /// one more new job, counting one more lost worker.
    pub(crate) fn split_around(
        mut self,
        lost: usize,
        fate: Fate,
        mut next_id: impl FnMut() -> u64,
    ) -> (Vec<Job>, Option<Delivery>) {
        let lost = lost.min(self.items.saturating_sub(1));
        let mut ranges = Vec::new();
        if lost > 0 {
            ranges.push(0..lost);
        }
        ranges.push(lost..lost + 1);
        if lost + 1 < self.items {
            ranges.push(lost + 1..self.items);
        }
        if ranges.len() == 1 {
            return match fate {
                Fate::Fail(e) => (Vec::new(), Some(self.failure(e))),
                Fate::Retry => {
                    self.lost += 1;
                    (vec![self], None)
                }
            };
        }
        let split = Arc::new(SplitSink {
            inner: self.sink.clone(),
            task: self.task,
            part: self.part,
            items: self.items,
            pieces: Mutex::new(Pieces {
                got: ranges.iter().map(|_| None).collect(),
                sizes: ranges.iter().map(|r| r.len()).collect(),
                missing: ranges.len(),
            }),
        });
        let mut jobs = Vec::new();
        let mut blamed = None;
        for (piece, range) in ranges.into_iter().enumerate() {
            let retry = range.start == lost && matches!(fate, Fate::Retry);
            if range.start == lost && !retry {
                continue;
            }
            let id = next_id();
            let items = range.len();
            match self.run.slice(range, id) {
                Ok(run) => {
                    let mut job = Job::new(id, self.task, run, items, piece, split.clone())
                        .with_policy(self.policy);
                    if retry {
                        job.lost = self.lost + 1;
                    }
                    jobs.push(job);
                }
                // Cannot happen for ranges of this job; fail the piece rather than lose it.
                Err(err) => split.complete(JobDone::failed(self.task, piece, items, err)),
            }
        }
        if let Fate::Fail(e) = fate {
            let piece = usize::from(lost > 0);
            blamed = Some(Delivery {
                done: JobDone::failed(self.task, piece, 1, e),
                sink: split,
            });
        }
        (jobs, blamed)
    }
}

/// What becomes of the item a dead worker was running.
pub(crate) enum Fate {
    /// It fails with this error.
    Fail(Error),
    /// It runs again elsewhere (its retry policy allows another attempt).
    Retry,
}

/// An outcome waiting to be handed to its sink.
pub(crate) struct Delivery {
    sink: Arc<dyn Sink>,
    done: JobDone<'static>,
}

impl Delivery {
    pub(crate) fn deliver(self) {
        self.sink.complete(self.done);
    }
}

struct Pieces {
    got: Vec<Option<Outcome<'static>>>,
    sizes: Vec<usize>,
    missing: usize,
}

/// Collects the pieces of a job that was cut up, and completes the job once all are in.
struct SplitSink {
    inner: Arc<dyn Sink>,
    task: &'static str,
    part: usize,
    items: usize,
    pieces: Mutex<Pieces>,
}

impl Sink for SplitSink {
    fn complete(&self, done: JobDone<'_>) {
        let all = {
            let mut p = lock(&self.pieces);
            match p.got.get_mut(done.part) {
                Some(slot @ None) => *slot = Some(done.outcome.into_owned()),
                _ => return, // each piece completes once
            }
            p.missing -= 1;
            if p.missing > 0 {
                return;
            }
            let got = std::mem::take(&mut p.got);
            p.sizes
                .iter()
                .copied()
                .zip(got.into_iter().flatten())
                .collect()
        };
        self.inner.complete(JobDone {
            task: self.task,
            part: self.part,
            items: self.items,
            outcome: Outcome::Pieces(all),
        });
    }

    fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
    fn claim(&self) -> bool {
        self.inner.claim()
    }
}

/// Decodes a finished job into one result per item.
pub(crate) fn decode_items<R: serde::de::DeserializeOwned>(done: JobDone<'_>) -> Vec<Result<R>> {
    let mut out = Vec::with_capacity(done.items);
    decode_into(done.task, done.outcome, done.items, &mut out);
    if tracing::enabled!(target: "multiproc::task", tracing::Level::DEBUG) {
        for e in out.iter().filter_map(|r| r.as_ref().err()) {
            tracing::debug!(target: "multiproc::task", task = done.task, error = %e, "task failed");
        }
    }
    out
}

/// Decodes a finished job of a `map`: appends its values to `list` in item order, or
/// answers the error of its first failing item (leaving `list` as it was). Every item
/// succeeded, the usual case: the values are decoded straight into the list. Otherwise item
/// by item, as `decode_items` does (which logs each failure).
pub(crate) fn decode_values_into<R: serde::de::DeserializeOwned>(
    done: JobDone<'_>,
    list: &mut Vec<R>,
) -> Result<()> {
    let mark = list.len();
    if values_into(&done.outcome, done.items, list) {
        return Ok(());
    }
    list.truncate(mark); // pieces before the one that failed
    for item in decode_items(done) {
        match item {
            Ok(v) => list.push(v),
            Err(e) => {
                list.truncate(mark);
                return Err(e);
            }
        }
    }
    Ok(())
}

fn values_into<R: serde::de::DeserializeOwned>(
    outcome: &Outcome<'_>,
    items: usize,
    out: &mut Vec<R>,
) -> bool {
    match outcome {
        Outcome::Body(body, at) => crate::wire::codec::decode_values_into(&body[*at..], items, out),
        Outcome::Failed(_) => false,
        Outcome::Pieces(pieces) => pieces.iter().all(|(n, piece)| values_into(piece, *n, out)),
    }
}

fn decode_into<R: serde::de::DeserializeOwned>(
    task: &str,
    outcome: Outcome<'_>,
    items: usize,
    out: &mut Vec<Result<R>>,
) {
    match outcome {
        Outcome::Body(body, at) => {
            match crate::wire::codec::decode_outcomes::<R>(task, &body[at..], items) {
                Ok(v) => out.extend(v),
                Err(e) => out.extend((0..items).map(|_| Err(e.clone()))),
            }
        }
        Outcome::Failed(e) => out.extend((0..items).map(|_| Err(e.clone()))),
        Outcome::Pieces(pieces) => {
            for (n, piece) in pieces {
                decode_into(task, piece, n, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;

    struct Collect(Mutex<Vec<Result<u32>>>);
    impl Sink for Collect {
        fn complete(&self, done: JobDone<'_>) {
            lock(&self.0).extend(decode_items::<u32>(done));
        }
    }

    fn result_body(values: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            codec::push_ok(&mut out, v);
        }
        out
    }

    /// Completes `j` as a worker would: each item's result is its argument.
    fn run_it(j: Job) {
        let run = codec::parse_run(&j.run.bytes[8..]).unwrap();
        let args: Vec<(u32,)> = crate::wire::serial::decode(run.args).unwrap();
        let values: Vec<u32> = args.into_iter().map(|a| a.0).collect();
        j.sink.complete(JobDone {
            task: "t",
            part: j.part,
            items: j.items,
            outcome: Outcome::Body(result_body(&values).into(), 0),
        });
    }

    #[test]
    fn a_split_job_completes_once_in_item_order() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let items: Vec<(u32,)> = (0..6).map(|i| (i,)).collect();
        let run = codec::run_frame(1, "t", &items).unwrap();
        let job = Job::new(1, "t", run, 6, 0, sink.clone());
        let mut id = 10;
        let mut next = || {
            id += 1;
            id
        };
        let lost = Error::WorkerLost {
            task: "t".into(),
            pid: 1,
            signal: Some(9),
            exit_code: None,
            attempts: 1,
        };
        let (mut jobs, blamed) = job.split_around(2, Fate::Fail(lost), &mut next);
        blamed.unwrap().deliver();
        assert_eq!(jobs.len(), 2);
        assert_eq!((jobs[0].items, jobs[1].items), (2, 3));
        // The later piece is cut again: its middle item is lost too.
        let (again, blamed) =
            jobs.pop()
                .unwrap()
                .split_around(1, Fate::Fail(Error::Timeout), &mut next);
        blamed.unwrap().deliver();
        assert_eq!(again.len(), 2);
        for j in again {
            run_it(j);
        }
        assert!(
            lock(&sink.0).is_empty(),
            "completed before every piece was in"
        );
        run_it(jobs.pop().unwrap());
        let got = std::mem::take(&mut *lock(&sink.0));
        assert_eq!(got.len(), 6);
        for (i, r) in got.iter().enumerate() {
            match i {
                2 => assert!(matches!(r, Err(Error::WorkerLost { .. })), "{r:?}"),
                4 => assert!(matches!(r, Err(Error::Timeout)), "{r:?}"),
                _ => assert_eq!(*r.as_ref().unwrap(), i as u32),
            }
        }
        // A job of one item just fails.
        let one = codec::run_frame(2, "t", &items[..1]).unwrap();
        let one = Job::new(2, "t", one, 1, 0, sink.clone());
        let (none, blamed) = one.split_around(0, Fate::Fail(Error::Timeout), &mut next);
        assert!(none.is_empty());
        assert!(lock(&sink.0).is_empty(), "delivered before it was asked to");
        blamed.unwrap().deliver();
        assert!(matches!(lock(&sink.0)[..], [Err(Error::Timeout)]));
    }

    /// `decode_values_into` onto a list already holding an earlier chunk's value, which
    /// stays whatever happens: this chunk's values, or its error.
    fn decode_values<R: serde::de::DeserializeOwned + Default + PartialEq + std::fmt::Debug>(
        done: JobDone,
    ) -> Result<Vec<R>> {
        let mut list = vec![R::default()];
        let r = decode_values_into(done, &mut list);
        assert_eq!(
            list.first(),
            Some(&R::default()),
            "the earlier value was lost"
        );
        if r.is_err() {
            assert_eq!(list.len(), 1, "a failed chunk left values behind");
        }
        r.map(|()| list.split_off(1))
    }

    #[test]
    fn a_map_chunk_decodes_to_its_values_or_its_first_failure() {
        let done = |outcome| JobDone {
            task: "t",
            part: 0,
            items: 3,
            outcome,
        };
        // All succeeded: the values, also from pieces of a cut job and after a job id.
        let mut framed = 7u64.to_le_bytes().to_vec();
        framed.extend(result_body(&[1, 2, 3]));
        assert_eq!(
            decode_values::<u32>(done(Outcome::Body(framed.into(), 8))).unwrap(),
            [1, 2, 3]
        );
        let pieces = Outcome::Pieces(vec![
            (1, Outcome::Body(result_body(&[1]).into(), 0)),
            (2, Outcome::Body(result_body(&[2, 3]).into(), 0)),
        ]);
        assert_eq!(decode_values::<u32>(done(pieces)).unwrap(), [1, 2, 3]);
        // One item panicked: the chunk fails with that item's error.
        let mut body = result_body(&[1]);
        codec::push_panic(
            &mut body,
            &codec::PanicInfo {
                message: "boom".into(),
                backtrace: None,
            },
        );
        body.extend(result_body(&[3]));
        let e = decode_values::<u32>(done(Outcome::Body(body.into(), 0))).unwrap_err();
        assert!(
            matches!(&e, Error::TaskPanicked { message, .. } if message == "boom"),
            "{e:?}"
        );
        // A piece lost with its worker: its error.
        let pieces = Outcome::Pieces(vec![
            (2, Outcome::Body(result_body(&[1, 2]).into(), 0)),
            (1, Outcome::Failed(Error::Timeout)),
        ]);
        assert!(matches!(
            decode_values::<u32>(done(pieces)),
            Err(Error::Timeout)
        ));
        // A value that does not decode as the result type, or a short body: errors, not values.
        let e = decode_values::<String>(done(Outcome::Body(result_body(&[1, 2, 3]).into(), 0)));
        assert!(matches!(e, Err(Error::Serialization { .. })), "{e:?}");
        let e = decode_values::<u32>(done(Outcome::Body(result_body(&[1, 2]).into(), 0)));
        assert!(matches!(e, Err(Error::Protocol(_))), "{e:?}");
    }

    #[test]
    fn a_retried_item_runs_again_as_its_own_job_and_counts_the_loss() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let items: Vec<(u32,)> = (0..4).map(|i| (i,)).collect();
        let run = codec::run_frame(1, "t", &items).unwrap();
        let policy = Policy {
            kill_after: None,
            retries: Some(2),
        };
        let job = Job::new(1, "t", run, 4, 0, sink.clone()).with_policy(policy);
        let mut id = 10;
        let mut next = || {
            id += 1;
            id
        };
        let (mut jobs, blamed) = job.split_around(1, Fate::Retry, &mut next);
        assert!(blamed.is_none());
        assert_eq!(jobs.iter().map(|j| j.items).collect::<Vec<_>>(), [1, 1, 2]);
        assert_eq!(jobs.iter().map(|j| j.lost).collect::<Vec<_>>(), [0, 1, 0]);
        assert!(jobs.iter().all(|j| j.policy == policy));
        // The retried item is lost again: a job of one item comes back whole.
        let again = jobs.remove(1);
        let (mut again, blamed) = again.split_around(0, Fate::Retry, &mut next);
        assert!(blamed.is_none());
        assert_eq!((again.len(), again[0].lost), (1, 2));
        for j in jobs.into_iter().chain(again.pop()) {
            run_it(j);
        }
        let got: Vec<u32> = std::mem::take(&mut *lock(&sink.0))
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, [0, 1, 2, 3]);
    }
}
