//! Frame layout: an 8-byte header `[MAGIC, kind, flags, nfds, len: u32 LE]`, then `len` body
//! bytes. The magic byte, the kind and the flags catch a desynchronised or corrupted stream at
//! the next frame. `nfds` is the number of file descriptors sent with the frame (`SCM_RIGHTS`,
//! attached to its first bytes), allowed only on RUN, START and WELCOME frames: the queues, pipes and
//! shared objects among the arguments.

use std::io::{self, BufRead, Read};

use crate::error::Error;

pub(crate) const MAGIC: u8 = 0xA7;
pub(crate) const HEADER_LEN: usize = 8;
/// Bodies above this are refused: a corrupted length must not make us allocate gigabytes.
pub(crate) const MAX_BODY: usize = 1 << 31;
/// RUN flag: the worker may hold this job's result back briefly to send it together with the
/// results of the jobs queued behind it (set for `map`/`imap` chunks, never for `apply`).
pub(crate) const FLAG_MAY_DELAY: u8 = 1;
/// On a RUN frame: the worker may spread the chunk's items over its threads
/// (`threads_per_worker`); unset, it runs them one by one, marking each in its lane.
pub(crate) const FLAG_PARALLEL: u8 = 2;

/// Frame kinds. Parent → worker: WELCOME, RUN, SHUTDOWN. Worker → parent: HELLO, READY,
/// RESULT, JOB_FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Hello = 1,
    Welcome = 2,
    Ready = 3,
    Run = 4,
    Result = 5,
    JobFailed = 6,
    Shutdown = 7,
    /// Parent → a `Process` child: the task to run, its arguments and the process's name.
    Start = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Ready,
            4 => Kind::Run,
            5 => Kind::Result,
            6 => Kind::JobFailed,
            7 => Kind::Shutdown,
            8 => Kind::Start,
            _ => return None,
        })
    }
}

/// One received frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub kind: Kind,
    pub flags: u8,
    pub body: Vec<u8>,
    /// Descriptors that came with the frame.
    pub fds: Vec<std::os::fd::OwnedFd>,
}

/// Starts a frame in `buf`: writes a header whose length is patched by [`finish`].
pub(crate) fn begin(buf: &mut Vec<u8>, kind: Kind) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[MAGIC, kind as u8, 0, 0, 0, 0, 0, 0]);
    start
}

/// Patches the length of the frame begun at `start`.
pub(crate) fn finish(buf: &mut [u8], start: usize) -> Result<(), Error> {
    let len = buf.len() - start - HEADER_LEN;
    if len > MAX_BODY {
        return Err(Error::serialization(
            "a message",
            format!("{len} bytes is over the {MAX_BODY}-byte frame limit"),
        ));
    }
    buf[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// A whole frame with the given body, ready to send.
pub(crate) fn encode(kind: Kind, body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::with_capacity(HEADER_LEN + body.len());
    let start = begin(&mut buf, kind);
    buf.extend_from_slice(body);
    finish(&mut buf, start)?;
    Ok(buf)
}

/// Validates a header; returns the kind, flags and body length.
pub(crate) fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(Kind, u8, usize), Error> {
    if h[0] != MAGIC || h[2] & !(FLAG_MAY_DELAY | FLAG_PARALLEL) != 0 {
        return Err(Error::Protocol(format!("corrupted frame header {h:02x?}")));
    }
    let kind = Kind::from_u8(h[1])
        .ok_or_else(|| Error::Protocol(format!("unknown frame kind {}", h[1])))?;
    if h[2] != 0 && kind != Kind::Run {
        return Err(Error::Protocol(format!("flags on a {kind:?} frame")));
    }
    if h[3] != 0 && !matches!(kind, Kind::Run | Kind::Start | Kind::Welcome) {
        return Err(Error::Protocol(format!("descriptors on a {kind:?} frame")));
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_BODY {
        return Err(Error::Protocol(format!(
            "frame length {len} over the limit"
        )));
    }
    Ok((kind, h[2], len))
}

/// Reads one frame from a blocking reader. `Ok(None)` is a clean end of stream between
/// frames; an end inside a frame is a protocol error.
pub(crate) fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, Error> {
    read_frame_with(r, |r, body| r.read_exact(body))
}

/// Reads one frame from a buffered reader and hands its kind and body to `f`, whose answer
/// it returns. A body the buffer holds whole (the usual case: results arrive in bursts of
/// small frames) is lent straight out of the buffer, neither allocated nor copied; a longer
/// one is read into a buffer of its own, copying out of the reader's buffer only what it
/// holds of it, so a big frame is not copied twice. `Ok(None)` as for [`read_frame`].
pub(crate) fn with_frame_buffered<R: Read, T>(
    r: &mut io::BufReader<R>,
    f: impl FnOnce(Kind, &[u8]) -> T,
) -> Result<Option<T>, Error> {
    let Some((kind, _flags, len)) = read_header(r)? else {
        return Ok(None);
    };
    if let Some(body) = r.buffer().get(..len) {
        let answer = f(kind, body);
        r.consume(len);
        return Ok(Some(answer));
    }
    let mut body = vec![0u8; len];
    let n = r.buffer().len();
    body[..n].copy_from_slice(r.buffer());
    r.consume(n);
    r.get_mut().read_exact(&mut body[n..]).map_err(body_error)?;
    Ok(Some(f(kind, &body)))
}

fn read_frame_with<R: Read>(
    r: &mut R,
    read_body: impl FnOnce(&mut R, &mut [u8]) -> io::Result<()>,
) -> Result<Option<Frame>, Error> {
    let Some((kind, flags, len)) = read_header(r)? else {
        return Ok(None);
    };
    let mut body = vec![0u8; len];
    read_body(r, &mut body).map_err(body_error)?;
    Ok(Some(Frame {
        kind,
        flags,
        body,
        fds: Vec::new(),
    }))
}

/// Reads and checks a frame header on a channel that carries no descriptors: the frame's
/// kind, flags and body length, or `None` at a clean end of stream.
fn read_header(r: &mut impl Read) -> Result<Option<(Kind, u8, usize)>, Error> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(Error::Protocol("stream ended inside a frame header".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (kind, flags, len) = parse_header(&header)?;
    if header[3] != 0 {
        return Err(Error::Protocol(format!(
            "a {kind:?} frame with descriptors on a channel that carries none"
        )));
    }
    Ok(Some((kind, flags, len)))
}

fn body_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Protocol("stream ended inside a frame body".into())
    } else {
        e.into()
    }
}

/// Number of descriptors announced by a (validated) header.
pub(crate) fn fd_count(h: &[u8]) -> usize {
    usize::from(h[3])
}

/// Records in a frame built in `buf` at `start` that `n` descriptors travel with it.
pub(crate) fn set_fd_count(buf: &mut [u8], start: usize, n: usize) -> Result<(), Error> {
    let n = u8::try_from(n)
        .ok()
        .filter(|&n| usize::from(n) <= crate::shm::fds::MAX_FDS)
        .ok_or_else(|| {
            Error::serialization("a message", format!("{n} descriptors is over the limit"))
        })?;
    buf[start + 3] = n;
    Ok(())
}

/// Splits the `job_id` prefix off a RUN / RESULT / JOB_FAILED body.
/// A complete frame held in memory (an MPI message): its kind, flags and body, checked
/// against the header's length.
#[cfg(feature = "mpi")]
pub(crate) fn parse_whole(buf: &[u8]) -> Result<(Kind, u8, &[u8]), Error> {
    let header: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| Error::Protocol("frame shorter than its header".into()))?;
    let (kind, flags, len) = parse_header(header)?;
    let body = &buf[HEADER_LEN..];
    if body.len() != len {
        return Err(Error::Protocol(format!(
            "{kind:?} frame of {} bytes, its header says {len}",
            body.len()
        )));
    }
    Ok((kind, flags, body))
}

pub(crate) fn split_job_id(body: &[u8]) -> Result<(u64, &[u8]), Error> {
    if body.len() < 8 {
        return Err(Error::Protocol("frame too short for a job id".into()));
    }
    let (id, rest) = body.split_at(8);
    let mut b = [0u8; 8];
    b.copy_from_slice(id);
    Ok((u64::from_le_bytes(b), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_eof() {
        let mut bytes = encode(Kind::Result, b"hello").unwrap();
        bytes.extend(encode(Kind::Shutdown, b"").unwrap());
        let mut r = &bytes[..];
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, &f.body[..]), (Kind::Result, &b"hello"[..]));
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, f.body.len()), (Kind::Shutdown, 0));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn corrupted_frames_are_errors() {
        let good = encode(Kind::Run, b"abcdefghij").unwrap();
        for cut in 1..good.len() {
            let mut r = &good[..cut];
            assert!(
                matches!(read_frame(&mut r), Err(Error::Protocol(_))),
                "cut {cut}"
            );
        }
        let mut bad = good.clone();
        bad[0] ^= 0xff;
        assert!(matches!(read_frame(&mut &bad[..]), Err(Error::Protocol(_))));
        let mut bad = good.clone();
        bad[1] = 99;
        assert!(matches!(read_frame(&mut &bad[..]), Err(Error::Protocol(_))));
        let mut bad = good;
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_frame(&mut &bad[..]), Err(Error::Protocol(_))));
    }

    /// A reader that hands out at most `step` bytes per read, as a socket may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn buffered_frames_of_every_size_arrive_whole_however_they_are_cut() {
        // Bodies shorter than, as long as and longer than the reader's buffer, read in pieces
        // that end anywhere: in a header, in a body, on a frame's end.
        let sizes = [0, 1, 7, 8, 9, 31, 32, 33, 100];
        let mut stream = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
            stream.extend(encode(Kind::Result, &body).unwrap());
        }
        for capacity in [HEADER_LEN, 16, 40, 64, 4096] {
            for step in [1, 3, 8, 13, 50, 4096] {
                let trickle = Trickle {
                    bytes: &stream,
                    step,
                };
                let mut r = io::BufReader::with_capacity(capacity, trickle);
                for (i, &n) in sizes.iter().enumerate() {
                    let got = with_frame_buffered(&mut r, |kind, body| (kind, body.to_vec()));
                    let (kind, body) = got.unwrap().unwrap();
                    let want: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
                    assert_eq!(kind, Kind::Result);
                    assert_eq!(body, want, "frame {i}, capacity {capacity}, step {step}");
                }
                assert!(with_frame_buffered(&mut r, |_, _| ()).unwrap().is_none());
            }
        }
    }

    #[test]
    fn a_buffered_frame_cut_short_is_an_error_and_reaches_no_one() {
        let good = encode(Kind::Result, b"abcdefghij").unwrap();
        for cut in 1..good.len() {
            for capacity in [HEADER_LEN, 64] {
                let mut r = io::BufReader::with_capacity(capacity, &good[..cut]);
                let got = with_frame_buffered(&mut r, |_, _| panic!("a cut frame was read"));
                assert!(matches!(got, Err(Error::Protocol(_))), "cut {cut}");
            }
        }
        let with_fds = {
            let mut f = encode(Kind::Result, b"x").unwrap();
            f[3] = 1;
            f
        };
        let mut r = io::BufReader::new(&with_fds[..]);
        let got = with_frame_buffered(&mut r, |_, _| panic!("read a frame with descriptors"));
        assert!(matches!(got, Err(Error::Protocol(_))));
    }
}
