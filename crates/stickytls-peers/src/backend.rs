//! A rustls backend that tells the client who it is, and a black hole.
//!
//! Protocol after the handshake, one line at a time: for every
//! newline-terminated line the client sends, the backend answers
//!
//! ```text
//! backend=<name> resumed=<true|false> version=<TLSv1_2|TLSv1_3>
//! ```
//!
//! where `resumed` is the backend's own view of the handshake (rustls's
//! `handshake_kind()`), not the client's. An empty line (the blank line
//! that ends an HTTP/1.0 request) or the client closing its side makes the
//! backend send close_notify and close. So `openssl s_client` sending
//! `GET /whoami HTTP/1.0` reads the same answer from a rustls backend as
//! from an [`super::openssl::SServer`]. A test therefore learns which
//! backend it reached and whether that backend accepted the resumption from
//! the server itself, not from anything the router could fake.
//!
//! An HTTP/1.1 request (`GET /path HTTP/1.1`, as a browser or `curl` sends)
//! gets an HTTP/1.1 answer instead: its headers through the blank line are
//! read, then
//!
//! ```text
//! HTTP/1.1 200 OK
//! X-Backend: <name>
//! X-Resumed: <true|false>
//! X-TLS-Version: <TLSv1_2|TLSv1_3>
//! Content-Length: ...
//! Connection: close
//!
//! backend=<name>
//! ```
//!
//! and the connection is closed. The body is the same on every connection
//! to a backend, as a per-server `/whoami` page would be.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::SupportedKxGroup;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::{HandshakeKind, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::cert::{Leaf, TestCa};
use super::{Versions, pq_kx_groups, provider, version_name};

/// A handshake that does not finish in this time is abandoned, so a stuck
/// router cannot pin a backend task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest request line the backend reads before it gives up on the client.
const MAX_LINE: usize = 4096;

/// How a [`Backend`] is set up.
#[derive(Clone)]
pub struct BackendOptions {
    /// Reported in every answer and used as the certificate's CN.
    pub name: String,
    /// Where to listen; port 0 picks a free one. Must be on 127.0.0.0/8.
    pub addr: SocketAddr,
    /// Versions the backend negotiates.
    pub versions: Versions,
    /// Issue stateless tickets (RFC 5077 on TLS 1.2, TLS 1.3 tickets that
    /// carry the state). Each backend has its own ticket key, so a ticket is
    /// only good on the backend that issued it.
    pub tickets: bool,
    /// Keep a server-side session cache: TLS 1.2 session-ID resumption, and
    /// TLS 1.3 stateful tickets when `tickets` is off. With both off the
    /// backend never resumes.
    pub session_cache: bool,
    /// Key-exchange groups in preference order. Restricting this (say to
    /// SECP256R1) makes a client that guessed X25519 get a
    /// HelloRetryRequest.
    pub kx_groups: Vec<&'static dyn SupportedKxGroup>,
    /// ALPN protocols the backend accepts; empty means ALPN is ignored.
    pub alpn: Vec<Vec<u8>>,
    /// Certificate to serve; `None` issues one from [`TestCa::shared`] with
    /// `name` as CN.
    pub leaf: Option<Leaf>,
}

impl std::fmt::Debug for BackendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendOptions")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("versions", &self.versions)
            .field("tickets", &self.tickets)
            .field("session_cache", &self.session_cache)
            .field(
                "kx_groups",
                &self.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>(),
            )
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

impl BackendOptions {
    /// Both versions, tickets and a session cache, on 127.0.0.1:0.
    pub fn new(name: impl Into<String>) -> Self {
        BackendOptions {
            name: name.into(),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            versions: Versions::Both,
            tickets: true,
            session_cache: true,
            kx_groups: pq_kx_groups(),
            alpn: Vec::new(),
            leaf: None,
        }
    }

    /// Builds the rustls configuration these options describe.
    pub fn server_config(&self) -> io::Result<Arc<ServerConfig>> {
        let leaf = match &self.leaf {
            Some(leaf) => leaf.clone(),
            None => TestCa::shared().leaf(&self.name),
        };
        let mut config = ServerConfig::builder_with_provider(provider(self.kx_groups.clone()))
            .with_protocol_versions(self.versions.rustls())
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .map_err(io::Error::other)?;
        if self.tickets {
            config.ticketer =
                rustls::crypto::aws_lc_rs::Ticketer::new().map_err(io::Error::other)?;
        }
        config.session_storage = if self.session_cache {
            ServerSessionMemoryCache::new(1024)
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }
}

/// One completed handshake, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The TCP peer: the router's upstream socket, or the client itself
    /// when connected directly (which is how source binding is checked).
    pub peer: SocketAddr,
    /// Whether this backend resumed a session it knew.
    pub resumed: bool,
    /// `TLSv1_2` or `TLSv1_3`.
    pub version: String,
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
}

/// The line a backend answers with, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The backend's name.
    pub backend: String,
    /// The backend's view of whether the handshake resumed.
    pub resumed: bool,
    /// `TLSv1_2` or `TLSv1_3`.
    pub version: String,
}

impl Identity {
    /// Parses `backend=<name> resumed=<bool> version=<v>`; unknown keys are
    /// ignored so the line can grow without breaking older tests.
    pub fn parse(line: &str) -> Option<Identity> {
        let (mut backend, mut resumed, mut version) = (None, None, None);
        for field in line.split_whitespace() {
            match field.split_once('=')? {
                ("backend", v) => backend = Some(v.to_string()),
                ("resumed", v) => resumed = Some(v.parse().ok()?),
                ("version", v) => version = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Identity {
            backend: backend?,
            resumed: resumed?,
            version: version?,
        })
    }
}

/// State shared between the accept loop and [`RunningBackend`].
#[derive(Debug, Default)]
struct Counters {
    /// TCP connections accepted.
    connections: AtomicU64,
    /// Connections whose handshake failed or timed out.
    failed: AtomicU64,
    /// Completed handshakes in order.
    handshakes: Mutex<Vec<Handshake>>,
}

/// Starts backends.
#[derive(Debug)]
pub struct Backend;

impl Backend {
    /// Binds and starts serving. The listener is bound before this returns,
    /// so a client may connect at once.
    pub async fn start(options: BackendOptions) -> io::Result<RunningBackend> {
        let config = options.server_config()?;
        let listener = TcpListener::bind(options.addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            Arc::from(options.name.as_str()),
            counters.clone(),
        ));
        Ok(RunningBackend {
            name: options.name,
            addr,
            counters,
            task: Mutex::new(Some(task)),
        })
    }
}

/// A backend that is serving until [`kill`](RunningBackend::kill)ed or
/// dropped.
#[derive(Debug)]
pub struct RunningBackend {
    /// The name it answers with.
    name: String,
    /// The bound address.
    addr: SocketAddr,
    /// What it has seen so far.
    counters: Arc<Counters>,
    /// The accept loop; it owns the listener and every connection task, so
    /// aborting it is the whole of killing the backend.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RunningBackend {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections whose TLS handshake failed or timed out.
    pub fn failed_handshakes(&self) -> u64 {
        self.counters.failed.load(Ordering::SeqCst)
    }

    /// Every completed handshake, oldest first.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.counters.handshakes.lock().unwrap().clone()
    }

    /// How many completed handshakes were resumptions.
    pub fn resumed(&self) -> usize {
        self.handshakes().iter().filter(|h| h.resumed).count()
    }

    /// The source IP of every completed handshake, oldest first.
    pub fn peer_ips(&self) -> Vec<IpAddr> {
        self.handshakes().iter().map(|h| h.peer.ip()).collect()
    }

    /// Simulates a dead backend: closes the listener and every live
    /// connection. When this returns, new connections to [`addr`] are
    /// refused. Idempotent.
    ///
    /// [`addr`]: RunningBackend::addr
    pub async fn kill(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            // Waiting for the cancelled task is what guarantees the listener
            // and the connections have been dropped, not just scheduled to be.
            let _ = task.await;
        }
    }
}

impl Drop for RunningBackend {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    name: Arc<str>,
    counters: Arc<Counters>,
) {
    // Owning the connection tasks here means they die with the accept loop.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    counters.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve(
                        stream,
                        peer,
                        acceptor.clone(),
                        name.clone(),
                        counters.clone(),
                    ));
                }
                Err(error) => {
                    // Usually EMFILE: back off rather than spin.
                    tracing::warn!(%error, "test backend accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    name: Arc<str>,
    counters: Arc<Counters>,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) | Err(_) => {
            counters.failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let (_, conn) = tls.get_ref();
    let handshake = Handshake {
        peer,
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        version: conn
            .protocol_version()
            .map(version_name)
            .unwrap_or_default(),
        sni: conn.server_name().map(str::to_string),
    };
    let answer = format!(
        "backend={name} resumed={} version={}\n",
        handshake.resumed, handshake.version
    );
    let handshake_answer = handshake.clone();
    counters.handshakes.lock().unwrap().push(handshake);

    let (read, mut write) = tokio::io::split(tls);
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut read)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => break,
            Ok(_) if line == b"\n" || line == b"\r\n" => break,
            Ok(_) if is_http11_request(&line) => {
                if skip_http_headers(&mut read).await {
                    let _ = write
                        .write_all(http_answer(&name, &handshake_answer).as_bytes())
                        .await;
                }
                break;
            }
            Ok(_) if line.last() == Some(&b'\n') => {
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            // Over-long line, or EOF in the middle of one.
            Ok(_) | Err(_) => break,
        }
    }
    let _ = write.shutdown().await;
}

/// `METHOD TARGET HTTP/1.1` and its line end. HTTP/1.0 requests keep the
/// one-line answer (`openssl s_client` sends `GET /whoami HTTP/1.0`).
fn is_http11_request(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let mut words = text.trim_end().split(' ');
    matches!(
        (words.next(), words.next(), words.next(), words.next()),
        (Some(method), Some(_), Some("HTTP/1.1"), None)
            if !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase())
    )
}

/// Reads header lines through the blank line; false if the client closed
/// or sent an over-long line first.
async fn skip_http_headers(read: &mut (impl AsyncBufReadExt + Unpin)) -> bool {
    let mut line = Vec::new();
    for _ in 0..100 {
        line.clear();
        match read
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(_) if line == b"\r\n" || line == b"\n" => return true,
            Ok(_) if line.last() == Some(&b'\n') => {}
            _ => return false,
        }
    }
    false
}

/// The HTTP/1.1 answer described in the module docs.
fn http_answer(name: &str, handshake: &Handshake) -> String {
    let body = format!("backend={name}\n");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: {name}\r\nX-Resumed: {}\r\nX-TLS-Version: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        handshake.resumed,
        handshake.version,
        body.len()
    )
}

/// Accepts TCP connections and never reads or answers: a backend whose
/// process is alive but wedged. Connections are held open until dropped.
#[derive(Debug)]
pub struct BlackHole {
    /// The bound address.
    addr: SocketAddr,
    /// TCP connections accepted so far.
    accepted: Arc<AtomicU64>,
    /// The accept loop, which also owns the held connections.
    task: JoinHandle<()>,
}

impl BlackHole {
    /// Binds `addr` (port 0 picks one) and starts swallowing connections.
    pub async fn start(addr: SocketAddr) -> io::Result<BlackHole> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Ok(BlackHole {
            addr,
            accepted,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}
