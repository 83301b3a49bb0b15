//! Encoding of argument chunks and of per-item outcomes.
//!
//! A RUN body is `[job_id u64][epoch u32][seq u32][name_len u16][name][encoded Vec<Args>]`. A RESULT body is
//! `[job_id u64]` followed by one outcome per item: a tag byte, a u32 LE payload length,
//! then the encoded payload (`wire::serial`). Each item is encoded and length-prefixed on its own, so one
//! result that fails to serialize, fails to deserialize, or panics affects that item only.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::shm::fds::SharedFd;
use crate::wire::frame::{self, Kind};
use crate::wire::serial;

const TAG_OK: u8 = 0;
const TAG_PANICKED: u8 = 1;
const TAG_ENCODE_FAILED: u8 = 2;

/// Payload of a panic outcome.
#[derive(Serialize, Deserialize)]
pub(crate) struct PanicInfo {
    pub message: String,
    pub backtrace: Option<String>,
}

/// Appends one successful outcome, or an encode failure if `value` does not serialize.
pub(crate) fn push_ok<R: Serialize>(out: &mut Vec<u8>, value: &R) {
    let mark = out.len();
    if let Err(e) = push_item(out, TAG_OK, value) {
        out.truncate(mark);
        let _ = push_item(out, TAG_ENCODE_FAILED, &e.to_string());
    }
}

/// Appends a panic outcome.
pub(crate) fn push_panic(out: &mut Vec<u8>, info: &PanicInfo) {
    // Strings and options always encode.
    let _ = push_item(out, TAG_PANICKED, info);
}

fn push_item<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    tag: u8,
    value: &T,
) -> Result<(), serial::CodecError> {
    out.extend_from_slice(&[tag, 0, 0, 0, 0]);
    let len_at = out.len() - 4;
    serial::encode_into(out, value)?;
    let len = out.len() - len_at - 4;
    let len = u32::try_from(len).map_err(|_| serial::size_limit())?;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Offsets in a RUN frame, from the frame's first byte: job id (u64), lane epoch and
/// sequence number (u32 each, stamped when the job is written to a worker), then the task
/// name (u16 length first) and the argument chunk.
const RUN_JOB_ID: usize = frame::HEADER_LEN;
const RUN_EPOCH: usize = RUN_JOB_ID + 8;
const RUN_SEQ: usize = RUN_EPOCH + 4;
const RUN_NAME: usize = RUN_SEQ + 4;
/// How much of a RUN frame differs from one send of it to the next (flags, epoch and
/// sequence number are all in it): see [`RunFrame::stamped_head`].
pub(crate) const RUN_STAMPED: usize = RUN_NAME;

/// A RUN frame ready to write, with what it takes to cut it into smaller jobs later.
pub(crate) struct RunFrame {
    /// Never changed once the job is queued: each send stamps a copy of its head (see
    /// [`RunFrame::stamped_head`]).
    pub bytes: FrameBytes,
    /// Descriptors of the queues, pipes and shared objects among the arguments.
    pub fds: Vec<SharedFd>,
    /// Where the first item's arguments start in `bytes` (after the item count).
    pub items_at: u32,
    /// Where each item's arguments end in `bytes`; empty for a job of one item.
    pub item_ends: Vec<u32>,
}

/// A frame's bytes: its own until a write in progress has to share them (a big frame, written
/// outside the lock under which its job can be taken back and sent elsewhere). Small frames
/// are copied into the write instead and never shared, which spares them the allocation of
/// an `Arc` each (at chunksize 1, one per item).
pub(crate) enum FrameBytes {
    Own(Vec<u8>),
    Shared(std::sync::Arc<Vec<u8>>),
}

impl FrameBytes {
    /// The bytes as an `Arc` that a write can hold on to.
    pub(crate) fn share(&mut self) -> std::sync::Arc<Vec<u8>> {
        let shared = match std::mem::replace(self, FrameBytes::Own(Vec::new())) {
            FrameBytes::Own(v) => std::sync::Arc::new(v),
            FrameBytes::Shared(a) => a,
        };
        *self = FrameBytes::Shared(shared.clone());
        shared
    }

    /// The bytes to change, copied first if a write still holds them.
    fn make_mut(&mut self) -> &mut Vec<u8> {
        match self {
            FrameBytes::Own(v) => v,
            FrameBytes::Shared(a) => std::sync::Arc::make_mut(a),
        }
    }

    /// The bytes, copied only if a write still holds them.
    #[cfg(feature = "mpi")]
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            FrameBytes::Own(v) => v,
            FrameBytes::Shared(a) => std::sync::Arc::unwrap_or_clone(a),
        }
    }
}

impl std::ops::Deref for FrameBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FrameBytes::Own(v) => v,
            FrameBytes::Shared(a) => a,
        }
    }
}

/// Appends the encoding of `args` as a `Vec` (its length, then each item), noting
/// where each item ends if `ends` is given. Item by item gives the same bytes as encoding
/// the slice at once.
fn encode_items<A: Serialize>(
    buf: &mut Vec<u8>,
    args: &[A],
    mut ends: Option<&mut Vec<u32>>,
) -> Result<Vec<SharedFd>, Error> {
    serial::push_seq_len(buf, args.len());
    let (r, fds) = crate::shm::fds::collect(|| -> Result<(), serial::CodecError> {
        for a in args {
            serial::encode_into(buf, a)?;
            if let Some(ends) = ends.as_deref_mut() {
                ends.push(u32::try_from(buf.len()).unwrap_or(u32::MAX));
            }
        }
        Ok(())
    });
    r.map_err(|e| Error::serialization("a task argument", e))?;
    Ok(fds)
}

/// The argument chunk of a single call, as a worker's `run_chunk` takes it (an
/// initializer's), with the descriptors of the handles among its arguments.
pub(crate) fn encode_call<A: Serialize>(args: &A) -> Result<(Vec<u8>, Vec<SharedFd>), Error> {
    let mut buf = Vec::new();
    let fds = encode_items(&mut buf, std::slice::from_ref(args), None)?;
    Ok((buf, fds))
}

/// Bytes of a RUN frame for `task` besides its encoded arguments: header, job id, epoch,
/// sequence number, the task's name and the chunk's length prefix.
pub(crate) fn run_frame_overhead(task: &str) -> usize {
    RUN_NAME + 2 + task.len() + serial::SEQ_LEN_BYTES
}

/// Builds a complete RUN frame for `args` (a chunk of argument tuples), with the descriptors
/// of the queues, pipes and shared objects among them.
pub(crate) fn run_frame<A: Serialize>(
    job_id: u64,
    task: &str,
    args: &[A],
) -> Result<RunFrame, Error> {
    // Room for the usual case, an argument encoded in about its size in memory.
    let guess = std::mem::size_of_val(args).min(16 << 20);
    let mut buf = Vec::with_capacity(64 + task.len() + guess);
    let start = frame::begin(&mut buf, Kind::Run);
    buf.extend_from_slice(&job_id.to_le_bytes());
    buf.extend_from_slice(&[0; 8]); // epoch, seq
    buf.extend_from_slice(&(task.len() as u16).to_le_bytes());
    buf.extend_from_slice(task.as_bytes());
    let items_at = (buf.len() + serial::SEQ_LEN_BYTES) as u32;
    let mut ends = Vec::new();
    let fds = encode_items(&mut buf, args, (args.len() > 1).then_some(&mut ends))?;
    frame::finish(&mut buf, start)?;
    frame::set_fd_count(&mut buf, start, fds.len())?;
    Ok(RunFrame {
        bytes: FrameBytes::Own(buf),
        fds,
        items_at,
        item_ends: ends,
    })
}

impl RunFrame {
    /// A RUN frame for items `range` of this one, as job `job_id` (same task, flags and
    /// descriptors: handles keep their indices).
    pub(crate) fn slice(
        &self,
        range: std::ops::Range<usize>,
        job_id: u64,
    ) -> Result<RunFrame, Error> {
        let n = self.item_ends.len().max(1);
        if range.start >= range.end || range.end > n {
            return Err(Error::Protocol(format!(
                "no items {range:?} in a job of {n}"
            )));
        }
        let end_of = |i: usize| -> usize {
            if self.item_ends.is_empty() {
                self.bytes.len()
            } else {
                self.item_ends[i] as usize
            }
        };
        let from = if range.start == 0 {
            self.items_at as usize
        } else {
            end_of(range.start - 1)
        };
        let to = end_of(range.end - 1);
        let head = self.items_at as usize - serial::SEQ_LEN_BYTES;
        let mut bytes = Vec::with_capacity(head + 8 + to - from);
        bytes.extend_from_slice(&self.bytes[..head]);
        bytes[RUN_JOB_ID..RUN_JOB_ID + 8].copy_from_slice(&job_id.to_le_bytes());
        serial::push_seq_len(&mut bytes, range.len());
        let items_at = bytes.len() as u32;
        let shift = from as i64 - items_at as i64;
        bytes.extend_from_slice(&self.bytes[from..to]);
        frame::finish(&mut bytes, 0)?;
        let item_ends = if range.len() > 1 {
            self.item_ends[range]
                .iter()
                .map(|&e| (i64::from(e) - shift) as u32)
                .collect()
        } else {
            Vec::new()
        };
        Ok(RunFrame {
            bytes: FrameBytes::Own(bytes),
            fds: self.fds.clone(),
            items_at,
            item_ends,
        })
    }
}

impl RunFrame {
    /// Marks the frame as batchable (see `frame::FLAG_MAY_DELAY`).
    pub(crate) fn set_may_delay(&mut self) {
        self.bytes.make_mut()[2] |= frame::FLAG_MAY_DELAY;
    }

    /// Lets the worker run the chunk's items on its threads, or not (an MPI rank's frame;
    /// the pool's are stamped as they are sent, see [`RunFrame::stamped_head`]).
    #[cfg(feature = "mpi")]
    pub(crate) fn set_parallel(&mut self, parallel: bool) {
        let flags = self.bytes[2];
        let want = if parallel {
            flags | frame::FLAG_PARALLEL
        } else {
            flags & !frame::FLAG_PARALLEL
        };
        if want != flags {
            self.bytes.make_mut()[2] = want;
        }
    }

    /// The first [`RUN_STAMPED`] bytes of this frame as sent under lane `epoch` and `seq`,
    /// its items run at once or not (`frame::FLAG_PARALLEL`); the rest of the
    /// frame goes as it is. The frame itself does not change, so a write in progress can share it
    /// while the job is taken back and sent to another worker under another stamp.
    pub(crate) fn stamped_head(&self, epoch: u32, seq: u32, parallel: bool) -> [u8; RUN_STAMPED] {
        let mut head = [0u8; RUN_STAMPED];
        head.copy_from_slice(&self.bytes[..RUN_STAMPED]);
        if parallel {
            head[2] |= frame::FLAG_PARALLEL;
        } else {
            head[2] &= !frame::FLAG_PARALLEL;
        }
        head[RUN_EPOCH..RUN_EPOCH + 4].copy_from_slice(&epoch.to_le_bytes());
        head[RUN_SEQ..RUN_SEQ + 4].copy_from_slice(&seq.to_le_bytes());
        head
    }
}

/// A RUN body, taken apart.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub job_id: u64,
    pub epoch: u32,
    pub seq: u32,
    pub name: &'a str,
    /// encoded `Vec<Args>`.
    pub args: &'a [u8],
}

/// Parses a RUN body (the frame after its header).
pub(crate) fn parse_run(body: &[u8]) -> Result<Run<'_>, Error> {
    let at = |o: usize| o - frame::HEADER_LEN;
    if body.len() < at(RUN_NAME) + 2 {
        return Err(Error::Protocol("RUN frame too short".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
    let (job_id, _) = frame::split_job_id(body)?;
    let rest = &body[at(RUN_NAME)..];
    let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    let name = rest
        .get(2..2 + n)
        .ok_or_else(|| Error::Protocol("RUN frame task name truncated".into()))?;
    let name = std::str::from_utf8(name)
        .map_err(|_| Error::Protocol("RUN frame task name is not UTF-8".into()))?;
    Ok(Run {
        job_id,
        epoch: u32_at(at(RUN_EPOCH)),
        seq: u32_at(at(RUN_SEQ)),
        name,
        args: &rest[2 + n..],
    })
}

/// Decodes `n` outcomes of a RESULT body into results for the caller.
pub(crate) fn decode_outcomes<R: DeserializeOwned>(
    task: &str,
    mut body: &[u8],
    n: usize,
) -> Result<Vec<Result<R, Error>>, Error> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if body.len() < 5 {
            return Err(Error::Protocol(
                "RESULT frame has fewer outcomes than items".into(),
            ));
        }
        let tag = body[0];
        let len = u32::from_le_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = body
            .get(5..5 + len)
            .ok_or_else(|| Error::Protocol("RESULT frame outcome truncated".into()))?;
        body = &body[5 + len..];
        let item = match tag {
            TAG_OK => serial::decode::<R>(payload)
                .map_err(|e| Error::serialization(format!("the result of `{task}`"), e)),
            TAG_PANICKED => match serial::decode::<PanicInfo>(payload) {
                Ok(p) => Err(Error::TaskPanicked {
                    task: task.to_owned(),
                    message: p.message,
                    backtrace: p.backtrace,
                }),
                Err(e) => Err(Error::Protocol(format!("bad panic outcome: {e}"))),
            },
            TAG_ENCODE_FAILED => match serial::decode::<String>(payload) {
                Ok(message) => Err(Error::ResultEncoding {
                    task: task.to_owned(),
                    message,
                }),
                Err(e) => Err(Error::Protocol(format!("bad encode-failure outcome: {e}"))),
            },
            other => return Err(Error::Protocol(format!("unknown outcome tag {other}"))),
        };
        out.push(item);
    }
    if !body.is_empty() {
        return Err(Error::Protocol("RESULT frame has trailing bytes".into()));
    }
    Ok(out)
}

/// Appends the values of `n` outcomes to `out` when every one is a success that decodes;
/// otherwise leaves `out` as it was and answers `false` (the caller then decodes item by
/// item with `decode_outcomes` to learn which failed and why). No per-item `Result`: a
/// map's values go straight into the list the caller gets.
pub(crate) fn decode_values_into<R: DeserializeOwned>(
    mut body: &[u8],
    n: usize,
    out: &mut Vec<R>,
) -> bool {
    let mark = out.len();
    out.reserve(n);
    for _ in 0..n {
        let value = match body {
            [TAG_OK, a, b, c, d, rest @ ..] => {
                let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
                match (rest.get(..len), rest.get(len..)) {
                    (Some(payload), Some(tail)) => {
                        body = tail;
                        serial::decode::<R>(payload).ok()
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match value {
            Some(v) => out.push(v),
            None => {
                out.truncate(mark);
                return false;
            }
        }
    }
    if body.is_empty() {
        true
    } else {
        out.truncate(mark);
        false
    }
}

/// Checks a one-item outcome list without decoding the value (whose type the caller may not
/// know): `Ok` if the item succeeded, else its error.
pub(crate) fn check_single_outcome(task: &str, body: &[u8]) -> Result<(), Error> {
    match body.first() {
        Some(&TAG_OK) => Ok(()),
        Some(_) => match decode_outcomes::<()>(task, body, 1)?.pop() {
            Some(Err(e)) => Err(e),
            _ => Err(Error::Protocol("unexpected outcome".into())),
        },
        None => Err(Error::Protocol("no outcome".into())),
    }
}

/// Why a whole chunk failed in the worker before any item ran.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ChunkFailure {
    /// The worker has no task by this name.
    Unregistered(String),
    /// The argument bytes did not decode as the task's argument tuples.
    BadArgs(String),
}

impl ChunkFailure {
    /// The error a JOB_FAILED body (after its job id) stands for.
    pub(crate) fn decode_error(body: &[u8], task: &str) -> Error {
        match serial::decode::<ChunkFailure>(body) {
            Ok(failure) => failure.into_error(task),
            Err(e) => Error::Protocol(format!("bad JOB_FAILED: {e}")),
        }
    }

    pub(crate) fn into_error(self, task: &str) -> Error {
        match self {
            ChunkFailure::Unregistered(name) => Error::UnregisteredTask { name },
            ChunkFailure::BadArgs(m) => {
                Error::serialization(format!("the arguments of `{task}` (in the worker)"), m)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_per_item() {
        let mut out = Vec::new();
        push_ok(&mut out, &7u32);
        push_panic(
            &mut out,
            &PanicInfo {
                message: "boom".into(),
                backtrace: None,
            },
        );
        push_ok(&mut out, &9u32);
        let items = decode_outcomes::<u32>("t", &out, 3).unwrap();
        assert_eq!(items[0].as_ref().unwrap(), &7);
        assert!(matches!(&items[1], Err(Error::TaskPanicked { message, .. }) if message == "boom"));
        assert_eq!(items[2].as_ref().unwrap(), &9);
        assert!(matches!(
            decode_outcomes::<u32>("t", &out, 4),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            decode_outcomes::<u32>("t", &out, 2),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            decode_outcomes::<u32>("t", &[9, 0, 0, 0, 0], 1),
            Err(Error::Protocol(_))
        ));
        // A payload that does not decode as R fails that item only.
        let mut out = Vec::new();
        push_ok(&mut out, &"not a number");
        push_ok(&mut out, &true);
        let items = decode_outcomes::<bool>("t", &out, 2).unwrap();
        assert!(matches!(items[0], Err(Error::Serialization { .. })));
        assert!(items[1].as_ref().unwrap());
    }

    #[test]
    fn run_frame_layout() {
        let f = run_frame(42, "m::square", &[(3u64,), (4u64,)]).unwrap();
        let mut bytes = f.stamped_head(7, 9, false).to_vec();
        bytes.extend_from_slice(&f.bytes[RUN_STAMPED..]);
        let (kind, flags, len) = frame::parse_header(bytes[..8].try_into().unwrap()).unwrap();
        assert_eq!((kind, flags, len), (Kind::Run, 0, bytes.len() - 8));
        // The frame itself keeps its unstamped head; a parallel stamp sets the flag.
        assert_eq!(f.bytes[RUN_EPOCH..RUN_NAME], [0; 8]);
        assert_eq!(f.stamped_head(7, 9, true)[2], frame::FLAG_PARALLEL);
        let run = parse_run(&bytes[8..]).unwrap();
        assert_eq!(
            (run.job_id, run.epoch, run.seq, run.name),
            (42, 7, 9, "m::square")
        );
        let v: Vec<(u64,)> = crate::wire::serial::decode(run.args).unwrap();
        assert_eq!(v, vec![(3,), (4,)]);
        // Item by item is the encoding of the whole slice.
        assert_eq!(
            run.args,
            &crate::wire::serial::encode(&[(3u64,), (4u64,)][..]).unwrap()[..]
        );
    }

    #[test]
    fn a_chunk_slices_into_smaller_jobs() {
        let items: Vec<(String, u32)> = (0..5).map(|i| ("x".repeat(i), i as u32)).collect();
        let f = run_frame(1, "m::t", &items).unwrap();
        for (a, b) in [(0, 5), (0, 1), (1, 4), (4, 5), (2, 3)] {
            let s = f.slice(a..b, 99).unwrap();
            let run = parse_run(&s.bytes[8..]).unwrap();
            assert_eq!((run.job_id, run.name), (99, "m::t"));
            let v: Vec<(String, u32)> = crate::wire::serial::decode(run.args).unwrap();
            assert_eq!(v, items[a..b], "{a}..{b}");
            // A slice slices again.
            if b - a > 1 {
                let t = s.slice(1..b - a, 100).unwrap();
                let run = parse_run(&t.bytes[8..]).unwrap();
                let v: Vec<(String, u32)> = crate::wire::serial::decode(run.args).unwrap();
                assert_eq!(v, items[a + 1..b]);
            }
        }
        assert!(f.slice(3..3, 1).is_err());
        assert!(f.slice(4..6, 1).is_err());
        let one = run_frame(1, "m::t", &items[..1]).unwrap();
        assert_eq!(one.slice(0..1, 5).unwrap().bytes[16..], one.bytes[16..]);
    }
}
