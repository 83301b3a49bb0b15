//! The manager's server process: holds the shared objects and answers requests, one thread
//! per connection, until its owner's control channel closes.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::proto::{self, Bytes, DictOp, Kind, ListOp, Request, Response};
use crate::error::{Error, Result};

/// How long a peer has to complete the handshake, all of it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the owner asks for, first thing on the control channel.
#[derive(Serialize, Deserialize)]
pub(crate) struct Setup {
    /// `None`: an abstract Unix socket with a fresh name; else a TCP address to bind.
    pub tcp: Option<String>,
    pub authkey: Vec<u8>,
}

enum Obj {
    Dict(IndexMap<Bytes, Bytes>),
    List(Vec<Bytes>),
}

#[derive(Default)]
struct Objects {
    next_id: u64,
    by_id: HashMap<u64, Obj>,
    by_name: HashMap<String, u64>,
}

struct Server {
    objects: Mutex<Objects>,
    authkey: Vec<u8>,
}

impl Server {
    fn objects(&self) -> MutexGuard<'_, Objects> {
        crate::sys::wait::lock(&self.objects)
    }
}

/// The server process's main. Never returns.
pub(crate) fn manager_main(fd: OwnedFd) -> ! {
    let mut control = UnixStream::from(fd);
    let code = match run(&mut control) {
        Ok(()) => 0,
        Err(e) => {
            let _ = proto::send(&mut control, &Err::<String, String>(e.to_string()));
            1
        }
    };
    std::process::exit(code)
}

fn run(control: &mut UnixStream) -> Result<()> {
    let Some(setup) = proto::recv::<Setup>(control)? else {
        return Ok(());
    };
    let server = Arc::new(Server {
        objects: Mutex::new(Objects::default()),
        authkey: setup.authkey,
    });
    let address = match setup.tcp {
        Some(addr) => {
            let l = TcpListener::bind(&addr)
                .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr}: {e}")))?;
            let address = format!("{}", l.local_addr()?);
            let s = server.clone();
            spawn_thread(move || {
                accept_loop(l.incoming(), |conn: std::net::TcpStream| {
                    let _ = conn.set_nodelay(true);
                    serve_conn(&s, conn)
                })
            })?;
            address
        }
        None => {
            use std::os::linux::net::SocketAddrExt;
            let name = format!(
                "multiproc-manager-{}-{}",
                std::process::id(),
                hex(&proto::random_key()?[..8])
            );
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let l = UnixListener::bind_addr(&addr)?;
            let s = server.clone();
            spawn_thread(move || {
                accept_loop(l.incoming(), |conn: UnixStream| serve_conn(&s, conn))
            })?;
            format!("@{name}")
        }
    };
    proto::send(control, &Ok::<String, String>(address))?;
    // Serve until the owner closes the channel (drops the manager, or dies).
    let mut sink = [0u8; 64];
    while matches!(control.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

fn spawn_thread(f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("multiproc-manager".into())
        .spawn(f)?;
    Ok(())
}

/// Accepts connections for as long as the process lives. A connection whose thread cannot
/// be started is dropped; a failing `accept` (out of descriptors, say) is retried after a
/// pause rather than in a busy loop.
fn accept_loop<C>(
    incoming: impl Iterator<Item = std::io::Result<C>>,
    mut serve: impl FnMut(C) -> Result<()>,
) {
    for conn in incoming {
        match conn {
            Ok(c) => {
                let _ = serve(c);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the server needs of a connection, TCP or Unix.
trait Sock: Read + Write + AsFd + Sized {
    fn set_timeouts(&self, t: Option<Duration>) -> std::io::Result<()>;
    fn duplicate(&self) -> std::io::Result<Self>;
}

impl Sock for std::net::TcpStream {
    fn set_timeouts(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

impl Sock for UnixStream {
    fn set_timeouts(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

/// Connections that have not completed the handshake yet.
static UNAUTHENTICATED: AtomicUsize = AtomicUsize::new(0);
/// Beyond this many, new connections are closed at once: a flood of peers that never
/// authenticate cannot use up the server's threads and descriptors.
const MAX_UNAUTHENTICATED: usize = 64;

/// Starts serving one accepted connection on its own thread, unless too many are still
/// in their handshake.
fn serve_conn<S: Sock + Send + 'static>(server: &Arc<Server>, conn: S) -> Result<()> {
    if UNAUTHENTICATED.fetch_add(1, Ordering::SeqCst) >= MAX_UNAUTHENTICATED {
        UNAUTHENTICATED.fetch_sub(1, Ordering::SeqCst);
        return Ok(()); // dropping `conn` closes it
    }
    let s = server.clone();
    spawn_thread(move || serve(&s, conn)).inspect_err(|_| {
        UNAUTHENTICATED.fetch_sub(1, Ordering::SeqCst);
    })
}

/// The handshake's reads, each limited to what is left of one overall deadline (a peer
/// sending a byte now and then cannot keep a connection past it).
struct Deadlined<'a, S: Sock> {
    s: &'a mut S,
    deadline: Instant,
}

impl<S: Sock> Read for Deadlined<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.s.set_timeouts(Some(left))?;
        self.s.read(buf)
    }
}

impl<S: Sock> Write for Deadlined<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

/// One connection: handshake (unbuffered, nothing allocated for the peer), then requests
/// until the client goes away or misbehaves.
fn serve<S: Sock>(server: &Server, mut conn: S) {
    let authenticated = {
        let mut hs = Deadlined {
            s: &mut conn,
            deadline: Instant::now() + HANDSHAKE_TIMEOUT,
        };
        matches!(proto::accept(&mut hs, &server.authkey), Ok(true))
    };
    UNAUTHENTICATED.fetch_sub(1, Ordering::SeqCst);
    if !authenticated || conn.set_timeouts(None).is_err() {
        return;
    }
    let Ok(reader) = conn.duplicate() else { return };
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(conn);
    // A malformed message ends the connection: the stream can no longer be trusted.
    loop {
        if reader.buffer().is_empty() {
            // A client's next request often follows its last reply at once.
            crate::sys::wait::poll_briefly(reader.get_ref().as_fd());
        }
        let Ok(Some(req)) = proto::recv::<Request>(&mut reader) else {
            return;
        };
        let resp = handle(server, req);
        let sent = match proto::send(&mut writer, &resp) {
            // Too big to send (nothing was written): say so instead.
            Err(e @ Error::TooLarge { .. }) => {
                proto::send(&mut writer, &Response::Refused(e.to_string()))
            }
            other => other,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Python-style index: negative counts from the end. `None` if out of range.
fn index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

fn handle(server: &Server, req: Request) -> Response {
    let mut objs = server.objects();
    match req {
        Request::Open { kind, name } => {
            if let Some(name) = &name {
                if let Some(&id) = objs.by_name.get(name) {
                    let same = matches!(
                        (objs.by_id.get(&id), kind),
                        (Some(Obj::Dict(_)), Kind::Dict) | (Some(Obj::List(_)), Kind::List)
                    );
                    return if same {
                        Response::Id(id)
                    } else {
                        Response::Refused(format!("`{name}` names an object of another kind"))
                    };
                }
            }
            objs.next_id += 1;
            let id = objs.next_id;
            let obj = match kind {
                Kind::Dict => Obj::Dict(IndexMap::new()),
                Kind::List => Obj::List(Vec::new()),
            };
            objs.by_id.insert(id, obj);
            if let Some(name) = name {
                objs.by_name.insert(name, id);
            }
            Response::Id(id)
        }
        Request::Dict { id, op } => match objs.by_id.get_mut(&id) {
            Some(Obj::Dict(d)) => dict_op(d, op),
            _ => Response::Refused(format!("no shared dict with id {id}")),
        },
        Request::List { id, op } => match objs.by_id.get_mut(&id) {
            Some(Obj::List(l)) => list_op(l, op),
            _ => Response::Refused(format!("no shared list with id {id}")),
        },
    }
}

fn dict_op(d: &mut IndexMap<Bytes, Bytes>, op: DictOp) -> Response {
    match op {
        DictOp::Get(k) => Response::Value(d.get(&k).cloned()),
        DictOp::Insert(k, v) => Response::Value(d.insert(k, v)),
        DictOp::Remove(k) => Response::Value(d.shift_remove(&k)),
        DictOp::Contains(k) => Response::Bool(d.contains_key(&k)),
        DictOp::SetDefault(k, v) => Response::Value(Some(d.entry(k).or_insert(v).clone())),
        DictOp::Len => Response::Len(d.len() as u64),
        DictOp::Keys => Response::Values(d.keys().cloned().collect()),
        DictOp::Values => Response::Values(d.values().cloned().collect()),
        DictOp::Items => Response::Items(d.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        DictOp::Clear => {
            d.clear();
            Response::Done
        }
    }
}

fn list_op(l: &mut Vec<Bytes>, op: ListOp) -> Response {
    let out_of_range = |i: i64, len: usize| {
        Response::Refused(format!("list index {i} out of range for length {len}"))
    };
    match op {
        ListOp::Push(v) => {
            l.push(v);
            Response::Done
        }
        ListOp::Extend(vs) => {
            l.extend(vs);
            Response::Done
        }
        ListOp::Get(i) => Response::Value(index(i, l.len()).map(|i| l[i].clone())),
        ListOp::Set(i, v) => match index(i, l.len()) {
            Some(i) => {
                l[i] = v;
                Response::Done
            }
            None => out_of_range(i, l.len()),
        },
        ListOp::Insert(i, v) => {
            // As Python: an index past either end inserts at that end.
            let len = l.len() as i64;
            let at = if i < 0 { (i + len).max(0) } else { i.min(len) };
            l.insert(at as usize, v);
            Response::Done
        }
        ListOp::Pop(i) => match i {
            None => Response::Value(l.pop()),
            Some(i) => match index(i, l.len()) {
                Some(i) => Response::Value(Some(l.remove(i))),
                None => out_of_range(i, l.len()),
            },
        },
        ListOp::Len => Response::Len(l.len() as u64),
        ListOp::All => Response::Values(l.clone()),
        ListOp::Clear => {
            l.clear();
            Response::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::index;

    #[test]
    fn python_style_indices() {
        assert_eq!(index(0, 3), Some(0));
        assert_eq!(index(-1, 3), Some(2));
        assert_eq!(index(-3, 3), Some(0));
        assert_eq!(index(3, 3), None);
        assert_eq!(index(-4, 3), None);
        assert_eq!(index(0, 0), None);
    }
}
