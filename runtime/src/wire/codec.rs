//! Encoding of argument chunks and of per-item outcomes.
//!
//! A RUN body is `[job_id u64][name_len u16][name][bincode Vec<Args>]`. A RESULT body is
//! `[job_id u64]` followed by one outcome per item: a tag byte, a u32 LE payload length,
//! then the bincode payload. Each item is encoded and length-prefixed on its own, so one
//! result that fails to serialize, fails to deserialize, or panics affects that item only.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::shm::fds::SharedFd;
use crate::wire::frame::{self, Kind};

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

fn push_item<T: Serialize + ?Sized>(out: &mut Vec<u8>, tag: u8, value: &T) -> bincode::Result<()> {
    out.push(tag);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    bincode::serialize_into(&mut *out, value)?;
    let len = out.len() - len_at - 4;
    let len = u32::try_from(len).map_err(|_| Box::new(bincode::ErrorKind::SizeLimit))?;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Builds a complete RUN frame for `args` (a chunk of argument tuples), with the descriptors
/// of the queues, pipes and shared objects among them.
pub(crate) fn run_frame<A: Serialize>(
    job_id: u64,
    task: &str,
    args: &[A],
) -> Result<(Vec<u8>, Vec<SharedFd>), Error> {
    let mut buf = Vec::with_capacity(64 + task.len());
    let start = frame::begin(&mut buf, Kind::Run);
    buf.extend_from_slice(&job_id.to_le_bytes());
    buf.extend_from_slice(&(task.len() as u16).to_le_bytes());
    buf.extend_from_slice(task.as_bytes());
    let (r, fds) = crate::shm::fds::collect(|| bincode::serialize_into(&mut buf, args));
    r.map_err(|e| Error::serialization("a task argument", e))?;
    frame::finish(&mut buf, start)?;
    frame::set_fd_count(&mut buf, start, fds.len())?;
    Ok((buf, fds))
}

/// Marks a RUN frame built by [`run_frame`] as batchable (see `frame::FLAG_MAY_DELAY`).
pub(crate) fn set_may_delay(frame_bytes: &mut [u8]) {
    frame_bytes[2] |= frame::FLAG_MAY_DELAY;
}

/// Splits a RUN body (after the job id) into task name and argument bytes.
pub(crate) fn split_run(rest: &[u8]) -> Result<(&str, &[u8]), Error> {
    if rest.len() < 2 {
        return Err(Error::Protocol("RUN frame too short".into()));
    }
    let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    let name = rest
        .get(2..2 + n)
        .ok_or_else(|| Error::Protocol("RUN frame task name truncated".into()))?;
    let name = std::str::from_utf8(name)
        .map_err(|_| Error::Protocol("RUN frame task name is not UTF-8".into()))?;
    Ok((name, &rest[2 + n..]))
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
            TAG_OK => bincode::deserialize::<R>(payload)
                .map_err(|e| Error::serialization(format!("the result of `{task}`"), e)),
            TAG_PANICKED => match bincode::deserialize::<PanicInfo>(payload) {
                Ok(p) => Err(Error::TaskPanicked {
                    task: task.to_owned(),
                    message: p.message,
                    backtrace: p.backtrace,
                }),
                Err(e) => Err(Error::Protocol(format!("bad panic outcome: {e}"))),
            },
            TAG_ENCODE_FAILED => match bincode::deserialize::<String>(payload) {
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
        let (f, _) = run_frame(42, "m::square", &[(3u64,), (4u64,)]).unwrap();
        let (kind, flags, len) = frame::parse_header(f[..8].try_into().unwrap()).unwrap();
        assert_eq!((kind, flags, len), (Kind::Run, 0, f.len() - 8));
        let (id, rest) = frame::split_job_id(&f[8..]).unwrap();
        assert_eq!(id, 42);
        let (name, args) = split_run(rest).unwrap();
        assert_eq!(name, "m::square");
        let v: Vec<(u64,)> = bincode::deserialize(args).unwrap();
        assert_eq!(v, vec![(3,), (4,)]);
    }
}
