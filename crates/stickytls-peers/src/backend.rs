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
//!
//! With [`BackendOptions::proxy_protocol`] the backend requires a PROXY
//! protocol header (v1 or v2) before the handshake, as a server behind
//! HAProxy's `send-proxy` does: a connection without a valid one is closed
//! unanswered, the header's addresses and v2 TLVs are recorded with the
//! handshake, and a `LOCAL` (v2) or `UNKNOWN` (v1) header, a proxy's health
//! check, is counted, after which a ClientHello or nothing may follow.

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
    /// Require a PROXY protocol header before the TLS handshake (see the
    /// module docs).
    pub proxy_protocol: bool,
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
            .field("proxy_protocol", &self.proxy_protocol)
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
            proxy_protocol: false,
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
    /// The source address of the PROXY header before the handshake, with
    /// [`BackendOptions::proxy_protocol`]: the client as the proxy saw it.
    pub proxied: Option<SocketAddr>,
    /// The PROXY header's destination address.
    pub proxied_to: Option<SocketAddr>,
    /// The v2 header's TLVs, `(type, value)` in the order sent.
    pub proxy_tlvs: Vec<(u8, Vec<u8>)>,
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
    /// Connections that opened with a LOCAL or UNKNOWN PROXY header.
    local_probes: AtomicU64,
    /// Connections closed for a missing or invalid PROXY header.
    bad_proxy_headers: AtomicU64,
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
            options.proxy_protocol,
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

    /// The PROXY header's source address of every completed handshake
    /// that had one, oldest first.
    pub fn proxied_sources(&self) -> Vec<SocketAddr> {
        self.handshakes().iter().filter_map(|h| h.proxied).collect()
    }

    /// Connections that opened with a LOCAL (v2) or UNKNOWN (v1) PROXY
    /// header: a proxy's health checks.
    pub fn local_probes(&self) -> u64 {
        self.counters.local_probes.load(Ordering::SeqCst)
    }

    /// Connections closed because they did not start with a valid PROXY
    /// header (with [`BackendOptions::proxy_protocol`]).
    pub fn bad_proxy_headers(&self) -> u64 {
        self.counters.bad_proxy_headers.load(Ordering::SeqCst)
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
    proxy_protocol: bool,
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
                        proxy_protocol,
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
    mut stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    name: Arc<str>,
    proxy_protocol: bool,
    counters: Arc<Counters>,
) {
    let _ = stream.set_nodelay(true);
    let mut proxied = Proxied::default();
    if proxy_protocol {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_proxy_header(&mut stream)).await {
            Ok(Some(Header::Proxy(p))) => proxied = p,
            Ok(Some(Header::Local)) => {
                counters.local_probes.fetch_add(1, Ordering::SeqCst);
                // A TCP check ends here; a TLS check's hello follows.
                let mut first = [0u8; 1];
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
            Ok(None) | Err(_) => {
                counters.bad_proxy_headers.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
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
        proxied: proxied.source,
        proxied_to: proxied.destination,
        proxy_tlvs: proxied.tlvs,
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

/// What a PROXY header with addresses said.
#[derive(Debug, Default)]
struct Proxied {
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    tlvs: Vec<(u8, Vec<u8>)>,
}

/// A valid PROXY header.
enum Header {
    /// v2 LOCAL or v1 UNKNOWN: the proxy speaks for itself.
    Local,
    Proxy(Proxied),
}

/// Reads exactly one PROXY header, leaving the bytes behind it (the
/// ClientHello) in the socket for the TLS acceptor; `None` if the
/// connection does not start with a valid one. v1 is read up to its CRLF
/// (at most 107 bytes), v2 by its 16-byte prefix and the length in it.
async fn read_proxy_header(stream: &mut TcpStream) -> Option<Header> {
    const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    let mut buf = vec![0u8; 6];
    stream.read_exact(&mut buf).await.ok()?;
    if buf == b"PROXY " {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= 107 {
                return None;
            }
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.ok()?;
            buf.push(byte[0]);
        }
    } else if V2_SIGNATURE.starts_with(&buf) {
        buf.resize(16, 0);
        stream.read_exact(&mut buf[6..]).await.ok()?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        buf.resize(16 + len, 0);
        stream.read_exact(&mut buf[16..]).await.ok()?;
    } else {
        return None;
    }
    parse_proxy_header(&buf)
}

/// One whole header, parsed with ppp.
fn parse_proxy_header(bytes: &[u8]) -> Option<Header> {
    use ppp::{HeaderResult, v1, v2};
    let pair = |s: SocketAddr, d: SocketAddr| Proxied {
        source: Some(s),
        destination: Some(d),
        tlvs: Vec::new(),
    };
    match HeaderResult::parse(bytes) {
        HeaderResult::V1(Ok(h)) => match h.addresses {
            v1::Addresses::Unknown => Some(Header::Local),
            v1::Addresses::Tcp4(a) => Some(Header::Proxy(pair(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ))),
            v1::Addresses::Tcp6(a) => Some(Header::Proxy(pair(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ))),
        },
        HeaderResult::V2(Ok(h)) => {
            let mut p = match (h.command, &h.addresses) {
                (v2::Command::Local, _) => return Some(Header::Local),
                (_, v2::Addresses::IPv4(a)) => pair(
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                ),
                (_, v2::Addresses::IPv6(a)) => pair(
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                ),
                _ => return None,
            };
            for tlv in h.tlvs() {
                let tlv = tlv.ok()?;
                p.tlvs.push((tlv.kind, tlv.value.to_vec()));
            }
            Some(Header::Proxy(p))
        }
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `f` every 10 ms until it holds, for at most five seconds.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn headers_parse_into_addresses_tlvs_or_local() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n";
        let Some(Header::Proxy(p)) = parse_proxy_header(v1) else {
            panic!("v1 not read");
        };
        assert_eq!(p.source, Some("192.0.2.7:40000".parse().unwrap()));
        assert_eq!(p.destination, Some("198.51.100.1:443".parse().unwrap()));
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::7]:1".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .write_tlv(0xE0, b"key")
        .unwrap()
        .build()
        .unwrap();
        let Some(Header::Proxy(p)) = parse_proxy_header(&v2) else {
            panic!("v2 not read");
        };
        assert_eq!(p.source, Some("[2001:db8::7]:1".parse().unwrap()));
        assert_eq!(p.tlvs, [(0xE0, b"key".to_vec())]);
        assert!(matches!(
            parse_proxy_header(b"PROXY UNKNOWN\r\n"),
            Some(Header::Local)
        ));
        assert!(parse_proxy_header(b"PROXY TCP4 nonsense\r\n").is_none());
    }

    #[tokio::test]
    async fn a_proxy_backend_closes_what_has_no_header_and_counts_local_probes() {
        let mut options = BackendOptions::new("p");
        options.proxy_protocol = true;
        let backend = Backend::start(options).await.unwrap();

        let mut plain = TcpStream::connect(backend.addr()).await.unwrap();
        plain.write_all(&[0x16, 0x03, 0x01, 0, 5, 1]).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest));
        assert!(read.await.is_ok(), "closed, not left waiting");
        assert!(rest.is_empty(), "nothing answered: {rest:?}");
        eventually("bad header counted", || backend.bad_proxy_headers() == 1).await;

        for local in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00",
        ] {
            let mut probe = TcpStream::connect(backend.addr()).await.unwrap();
            probe.write_all(local).await.unwrap();
            drop(probe);
        }
        eventually("both probes counted", || backend.local_probes() == 2).await;
        assert_eq!(backend.bad_proxy_headers(), 1);
        assert_eq!(backend.failed_handshakes(), 0, "a probe is no failure");
    }
}
