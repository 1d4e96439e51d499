//! A diagnostic TLS client for servers we do not control: `stickytls
//! selftest` is built on it.
//!
//! Unlike [`super::client::Client`], which talks to our own backends and
//! trusts our own CA, a [`Probe`] must work against any farm an operator
//! points it at, so:
//!
//! - it **accepts any certificate**. It verifies no chain, no name and no
//!   validity period; it only checks that the server's handshake signature
//!   was made with the key of the certificate it presented, so that the
//!   certificate's fingerprint really names the server that answered. That
//!   is enough for a diagnostic which sends nothing secret and only asks
//!   "which backend answered, and did it resume?"; it would be wrong for
//!   anything that trusts the answer's content.
//! - it learns who answered from what any client can see: the leaf
//!   certificate of a full handshake ([`PeerCertificate`]), or an HTTP/1.1
//!   answer to a minimal GET ([`HttpAnswer`]). A resumed handshake carries
//!   no certificate, so it has none.
//! - it records the first bytes each way ([`Visit::client_bytes`],
//!   [`Visit::server_bytes`]), so the caller can read what the hello offered
//!   and what the server issued with the handshake inspector.
//!
//! One [`Probe`] is one session: it has its own session store, so its
//! second connection offers what its first one was given. Under TLS 1.3 the
//! tickets come after the handshake, so each connection waits until this
//! connection's first ticket is in (or the server closes, or the timeout).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, Resumption, Tls12Resumption};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, HandshakeKind, NamedGroup, SignatureScheme, client,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Versions, pq_kx_groups, provider, version_name};

/// Bytes kept of each direction's start: enough for a ClientHello with a
/// post-quantum key share and a server flight with a long certificate chain.
const RECORD_CAP: usize = 64 * 1024;

/// Largest HTTP header block and body read; a bigger answer is cut there
/// (the identity a backend gives is a header or a short page).
const MAX_HTTP_HEAD: usize = 16 * 1024;
const MAX_HTTP_BODY: usize = 64 * 1024;

/// TLS 1.3 tickets kept per probe; servers send one to a few per connection.
const MAX_TICKETS: usize = 8;

/// How a [`Probe`] is set up.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Versions offered. Pin one to test one resumption kind.
    pub versions: Versions,
    /// On TLS 1.2, ask for RFC 5077 tickets; off, the session can only be
    /// resumed by session ID.
    pub tls12_tickets: bool,
    /// SNI to send. `None` sends none (the server name is the target's IP).
    pub sni: Option<String>,
    /// After the handshake, send this GET and read the answer.
    pub http: Option<HttpRequest>,
    /// Bound on each connection: connect, handshake, answer and ticket
    /// wait together.
    pub timeout: Duration,
}

/// A minimal HTTP/1.1 GET.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The request target, e.g. `/` or `/whoami`.
    pub path: String,
    /// The Host header.
    pub host: String,
}

impl HttpRequest {
    /// The request bytes: `Connection: close`, so the answer ends with the
    /// connection even when the server sends no length.
    fn bytes(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: stickytls-selftest\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path, self.host
        )
        .into_bytes()
    }
}

/// What one connection showed.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The client's socket address (source IP and port).
    pub local: SocketAddr,
    /// `TLSv1_2` or `TLSv1_3`.
    pub version: String,
    /// The client's view: the server accepted the session offered.
    pub resumed: bool,
    /// The leaf certificate, on a full handshake only: a resumed handshake
    /// sends none (rustls would report the stored one, which says nothing
    /// about who answered).
    pub certificate: Option<PeerCertificate>,
    /// The answer to the GET, when one was asked for.
    pub http: Option<HttpAnswer>,
    /// TLS 1.3 tickets this connection received.
    pub tls13_tickets: usize,
    /// The first bytes the client sent (its hello first).
    pub client_bytes: Vec<u8>,
    /// The first bytes the server sent (its hello first).
    pub server_bytes: Vec<u8>,
}

/// A server's leaf certificate, reduced to what tells servers apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 of the DER: the same certificate on two servers gives the
    /// same fingerprint, so they cannot be told apart by it.
    pub sha256: [u8; 32],
    /// The subject as RFC 4514 text, if the certificate parses.
    pub subject: Option<String>,
    /// The subject's first Common Name.
    pub common_name: Option<String>,
    /// DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
}

impl PeerCertificate {
    /// Reads a DER certificate. The fingerprint is always there; names only
    /// when the certificate parses as X.509.
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        let sha256 = Sha256::digest(der).into();
        let (subject, common_name, dns_names) = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let cn = cert
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_string);
                let dns = match cert.subject_alternative_name() {
                    Ok(Some(san)) => san
                        .value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                (Some(cert.subject().to_string()), cn, dns)
            }
            Err(_) => (None, None, Vec::new()),
        };
        PeerCertificate {
            sha256,
            subject,
            common_name,
            dns_names,
        }
    }

    /// The fingerprint in lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// An HTTP/1.1 answer, as far as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked, cut at 64 KiB.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses a whole answer: status line, headers, and a body framed by
    /// `Content-Length`, chunked, or the end of the connection.
    pub fn parse(raw: &[u8]) -> Result<HttpAnswer, &'static str> {
        HttpAnswer::parse_read(raw, false)
    }

    /// [`parse`](HttpAnswer::parse); with `cut`, `raw` was cut at our read
    /// limit, so a body shorter than announced is kept as far as it goes.
    fn parse_read(raw: &[u8], cut: bool) -> Result<HttpAnswer, &'static str> {
        let head_end = find(raw, b"\r\n\r\n").ok_or("no end of the header block")?;
        let head = std::str::from_utf8(raw.get(..head_end).ok_or("short")?)
            .map_err(|_| "header block is not UTF-8")?;
        let rest = raw.get(head_end + 4..).ok_or("short")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().ok_or("no status line")?;
        let mut words = status_line.splitn(3, ' ');
        if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
            return Err("not an HTTP/1.x status line");
        }
        let status = words
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("no status code")?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').ok_or("header line without a colon")?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut answer = HttpAnswer {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = answer
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        answer.body = if chunked {
            dechunk(rest, cut)?
        } else if let Some(len) = answer.header("content-length") {
            let len: usize = len.parse().map_err(|_| "bad Content-Length")?;
            match rest.get(..len) {
                Some(body) => body.to_vec(),
                None if cut => rest.to_vec(),
                None => return Err("body shorter than Content-Length"),
            }
        } else {
            rest.to_vec()
        };
        Ok(answer)
    }

    /// Whether `raw` already holds a whole answer, so reading can stop
    /// before the server closes.
    fn is_complete(raw: &[u8]) -> bool {
        let Some(head_end) = find(raw, b"\r\n\r\n") else {
            return false;
        };
        match HttpAnswer::parse(raw) {
            Ok(a) if a.header("transfer-encoding").is_some() => {
                // The last chunk ends with an empty chunk and an empty line.
                raw.get(head_end..)
                    .is_some_and(|b| b.ends_with(b"0\r\n\r\n"))
            }
            Ok(a) => a.header("content-length").is_some(),
            Err(_) => false,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Chunked transfer coding (RFC 9112 7.1): `size[;ext] CRLF data CRLF`
/// until a zero size. With `cut`, input that ends early gives the body so
/// far.
fn dechunk(mut rest: &[u8], cut: bool) -> Result<Vec<u8>, &'static str> {
    let mut body = Vec::new();
    if cut {
        return match dechunk_into(&mut rest, &mut body) {
            Ok(()) | Err(_) => Ok(body),
        };
    }
    dechunk_into(&mut rest, &mut body)?;
    Ok(body)
}

fn dechunk_into(rest: &mut &[u8], body: &mut Vec<u8>) -> Result<(), &'static str> {
    loop {
        let line_end = find(rest, b"\r\n").ok_or("chunk size line cut")?;
        let line = std::str::from_utf8(rest.get(..line_end).ok_or("short")?)
            .map_err(|_| "chunk size is not text")?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| "bad chunk size")?;
        *rest = rest.get(line_end + 2..).ok_or("short")?;
        if size == 0 {
            return Ok(());
        }
        let Some(data) = rest.get(..size) else {
            body.extend_from_slice(rest);
            return Err("chunk cut short");
        };
        body.extend_from_slice(data);
        *rest = rest.get(size + 2..).ok_or("chunk without its CRLF")?;
    }
}

/// Why a connection failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The source address could not be bound (not an address of this host?).
    #[error("cannot bind source address {0}: {1}")]
    Bind(IpAddr, #[source] io::Error),
    /// TCP connect failed.
    #[error("TCP connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed (an alert, a reset, a close).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// Sending the GET or reading its answer failed.
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    /// The stage named did not finish within the timeout.
    #[error("timed out during {0}")]
    TimedOut(&'static str),
}

/// One session: its own store, so each connection offers what the previous
/// one was given.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Carries the session store.
    config: Arc<ClientConfig>,
    /// The same store, to wait for TLS 1.3 tickets.
    store: Arc<SessionStore>,
    /// SNI (or the target's IP, for no SNI).
    server_name: ServerName<'static>,
    /// The GET to send after the handshake, if any.
    http: Option<HttpRequest>,
    /// Bound on each connection.
    timeout: Duration,
}

impl Probe {
    /// A probe for `target`; fails only on inconsistent options (an invalid
    /// SNI, a version without cipher suites).
    pub fn new(options: ProbeOptions, target: SocketAddr) -> Result<Probe, rustls::Error> {
        let provider = provider(pq_kx_groups());
        let verifier = Arc::new(AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        });
        let store = Arc::new(SessionStore::default());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(options.versions.rustls())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.resumption =
            Resumption::store(store.clone()).tls12_resumption(if options.tls12_tickets {
                Tls12Resumption::SessionIdOrTickets
            } else {
                Tls12Resumption::SessionIdOnly
            });
        if options.http.is_some() {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        let server_name = match options.sni {
            Some(name) => ServerName::try_from(name)
                .map_err(|_| rustls::Error::General("invalid SNI".into()))?,
            None => ServerName::IpAddress(target.ip().into()),
        };
        Ok(Probe {
            config: Arc::new(config),
            store,
            server_name,
            http: options.http,
            timeout: options.timeout,
        })
    }

    /// One connection from `source` (any local address if `None`; the port
    /// is ephemeral), offering whatever session the probe holds. Fails if
    /// the connection, the handshake or the HTTP exchange fails or does not
    /// finish within the timeout; a server that sends no TLS 1.3 ticket
    /// within it is not a failure (the visit shows none).
    pub async fn connect(
        &self,
        target: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<Visit, ProbeError> {
        let deadline = Instant::now() + self.timeout;
        let mut stage = "TCP connect";
        let opened = tokio::time::timeout_at(deadline, self.open(target, source, &mut stage)).await;
        let (mut tls, mut visit, closed) = match opened {
            Ok(opened) => opened?,
            Err(_) => return Err(ProbeError::TimedOut(stage)),
        };
        let tickets_before = visit.tls13_tickets;
        if visit.version == "TLSv1_3" && !closed {
            let _ =
                tokio::time::timeout_at(deadline, self.wait_for_ticket(&mut tls, tickets_before))
                    .await;
        }
        // close_notify, then our FIN; the server's answer is not awaited.
        let _ = tokio::time::timeout(self.timeout, tls.shutdown()).await;
        let (io, _) = tls.get_mut();
        visit.tls13_tickets = self.store.tls13_inserted() - tickets_before;
        visit.client_bytes = std::mem::take(&mut io.sent);
        visit.server_bytes = std::mem::take(&mut io.received);
        Ok(visit)
    }

    /// Connects, shakes hands and, if asked, does the HTTP exchange. The
    /// visit's `tls13_tickets` holds the store's count before the handshake;
    /// the bool says whether the server has closed.
    async fn open(
        &self,
        target: SocketAddr,
        source: Option<IpAddr>,
        stage: &mut &'static str,
    ) -> Result<(TlsStream<Recording>, Visit, bool), ProbeError> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ProbeError::Connect)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| ProbeError::Bind(ip, e))?;
        }
        let tcp = socket.connect(target).await.map_err(ProbeError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_err(ProbeError::Connect)?;
        let tickets_before = self.store.tls13_inserted();

        *stage = "the TLS handshake";
        let mut tls = TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), Recording::new(tcp))
            .await
            .map_err(ProbeError::Handshake)?;
        let (io, conn) = tls.get_mut();
        io.recording = false;
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let certificate = match conn.peer_certificates() {
            Some([leaf, ..]) if !resumed => Some(PeerCertificate::from_der(leaf)),
            _ => None,
        };
        let mut visit = Visit {
            local,
            version: conn
                .protocol_version()
                .map(version_name)
                .unwrap_or_default(),
            resumed,
            certificate,
            http: None,
            tls13_tickets: tickets_before,
            client_bytes: Vec::new(),
            server_bytes: Vec::new(),
        };
        let mut closed = false;
        if let Some(request) = &self.http {
            *stage = "the HTTP exchange";
            let (answer, eof) = exchange(&mut tls, request).await?;
            visit.http = Some(answer);
            closed = eof;
        }
        Ok((tls, visit, closed))
    }

    /// Reads (and drops any application data) until a ticket newer than
    /// `before` is stored or the server closes. The caller's deadline bounds
    /// a server that sends no ticket at all.
    async fn wait_for_ticket(&self, tls: &mut TlsStream<Recording>, before: usize) {
        let mut buf = [0u8; 4096];
        loop {
            if self.store.tls13_inserted() > before {
                return;
            }
            tokio::select! {
                read = tls.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = self.store.inserted.notified() => {}
            }
        }
    }
}

/// Sends the GET and reads the answer, until it is whole or the server
/// closes; says whether the server closed.
async fn exchange(
    tls: &mut TlsStream<Recording>,
    request: &HttpRequest,
) -> Result<(HttpAnswer, bool), ProbeError> {
    tls.write_all(&request.bytes())
        .await
        .map_err(|e| ProbeError::Http(format!("sending the request: {e}")))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut eof = false;
    let mut cut = false;
    while !HttpAnswer::is_complete(&raw) {
        match tls.read(&mut buf).await {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => raw.extend_from_slice(buf.get(..n).unwrap_or_default()),
            // A server that closes without close_notify after a
            // `Connection: close` answer has still answered.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {
                eof = true;
                break;
            }
            Err(e) => return Err(ProbeError::Http(format!("reading the answer: {e}"))),
        }
        if raw.len() > MAX_HTTP_HEAD + MAX_HTTP_BODY {
            cut = true;
            break;
        }
    }
    if raw.is_empty() {
        return Err(ProbeError::Http(
            "the server closed without answering".into(),
        ));
    }
    let answer = HttpAnswer::parse_read(&raw, cut).map_err(|e| ProbeError::Http(e.to_string()))?;
    Ok((answer, eof))
}

/// Trusts every certificate, but checks that the handshake was signed with
/// the presented certificate's key (see the module docs for why).
#[derive(Debug)]
struct AcceptAnyCertificate {
    /// The provider's signature algorithms.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// One probe's sessions: the last TLS 1.2 session, a few TLS 1.3 tickets
/// (newest taken first, as rustls's own store does), and a signal for each
/// ticket stored.
#[derive(Debug, Default)]
struct SessionStore {
    /// The key-exchange group the server chose last.
    kx_hint: Mutex<Option<NamedGroup>>,
    /// The last TLS 1.2 session.
    tls12: Mutex<Option<client::Tls12ClientSessionValue>>,
    /// TLS 1.3 tickets, oldest first.
    tls13: Mutex<VecDeque<client::Tls13ClientSessionValue>>,
    /// Tickets stored so far, ever.
    tls13_inserted: AtomicUsize,
    /// Signalled on every ticket stored.
    inserted: Notify,
}

impl SessionStore {
    fn tls13_inserted(&self) -> usize {
        self.tls13_inserted.load(Ordering::SeqCst)
    }
}

// A probe talks to one server name, so the name is not part of the key.
impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        *self.kx_hint.lock().unwrap() = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        *self.kx_hint.lock().unwrap()
    }

    fn set_tls12_session(&self, _: ServerName<'static>, value: client::Tls12ClientSessionValue) {
        *self.tls12.lock().unwrap() = Some(value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<client::Tls12ClientSessionValue> {
        self.tls12.lock().unwrap().clone()
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        *self.tls12.lock().unwrap() = None;
    }

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: client::Tls13ClientSessionValue) {
        let mut tickets = self.tls13.lock().unwrap();
        if tickets.len() == MAX_TICKETS {
            tickets.pop_front();
        }
        tickets.push_back(value);
        drop(tickets);
        self.tls13_inserted.fetch_add(1, Ordering::SeqCst);
        // notify_one keeps a permit when nobody waits yet, so a ticket
        // stored between the count check and the wait is not missed.
        self.inserted.notify_one();
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<client::Tls13ClientSessionValue> {
        self.tls13.lock().unwrap().pop_back()
    }
}

/// A TCP stream that keeps a copy of the first [`RECORD_CAP`] bytes each
/// way while `recording` is on (the handshake).
#[derive(Debug)]
struct Recording {
    /// The socket.
    inner: tokio::net::TcpStream,
    /// Switched off once the handshake is over.
    recording: bool,
    /// What the client wrote.
    sent: Vec<u8>,
    /// What the server sent.
    received: Vec<u8>,
}

impl Recording {
    fn new(inner: tokio::net::TcpStream) -> Recording {
        Recording {
            inner,
            recording: true,
            sent: Vec::new(),
            received: Vec::new(),
        }
    }
}

fn keep(log: &mut Vec<u8>, bytes: &[u8]) {
    let room = RECORD_CAP.saturating_sub(log.len());
    log.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if self.recording {
            let new = buf.filled().get(before..).unwrap_or_default().to_vec();
            keep(&mut self.received, &new);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        if self.recording {
            keep(&mut self.sent, data.get(..n).unwrap_or_default());
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, BackendOptions};
    use crate::cert::TestCa;

    fn options(versions: Versions, http: bool) -> ProbeOptions {
        ProbeOptions {
            versions,
            tls12_tickets: true,
            sni: Some("localhost".into()),
            http: http.then(|| HttpRequest {
                path: "/".into(),
                host: "localhost".into(),
            }),
            timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn certificate_from_an_unknown_ca_is_accepted_and_named() {
        // A CA the probe has never heard of.
        let leaf = TestCa::new().leaf("stranger");
        let backend = Backend::start(BackendOptions {
            leaf: Some(leaf.clone()),
            ..BackendOptions::new("stranger")
        })
        .await
        .unwrap();
        let probe = Probe::new(options(Versions::Both, false), backend.addr()).unwrap();
        let visit = probe.connect(backend.addr(), None).await.unwrap();
        let cert = visit
            .certificate
            .expect("a full handshake shows its certificate");
        assert_eq!(cert.common_name.as_deref(), Some("stranger"));
        assert!(cert.dns_names.contains(&"localhost".to_string()));
        assert_eq!(
            cert.sha256,
            <[u8; 32]>::from(Sha256::digest(&leaf.chain[0]))
        );
        assert!(visit.tls13_tickets > 0, "waited for the TLS 1.3 ticket");
    }

    #[tokio::test]
    async fn second_connection_resumes_and_shows_no_certificate() {
        for versions in [Versions::Tls12, Versions::Tls13] {
            let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
            // With HTTP, each answer comes after the backend has recorded
            // its handshake, so its counts can be read at once.
            let probe = Probe::new(options(versions, true), backend.addr()).unwrap();
            let first = probe.connect(backend.addr(), None).await.unwrap();
            assert!(!first.resumed);
            assert!(first.certificate.is_some());
            let second = probe.connect(backend.addr(), None).await.unwrap();
            assert!(second.resumed, "{versions:?}");
            assert!(second.certificate.is_none());
            assert_eq!(second.http.unwrap().header("x-resumed"), Some("true"));
            assert_eq!(backend.resumed(), 1, "{versions:?}: the backend agrees");
        }
    }

    #[tokio::test]
    async fn tls13_server_without_tickets_is_a_visit_with_none() {
        // Neither a ticket key nor a session cache: nothing to resume with.
        let backend = Backend::start(BackendOptions {
            tickets: false,
            session_cache: false,
            ..BackendOptions::new("a")
        })
        .await
        .unwrap();
        let probe = Probe::new(
            ProbeOptions {
                timeout: Duration::from_millis(300),
                ..options(Versions::Tls13, false)
            },
            backend.addr(),
        )
        .unwrap();
        let visit = probe.connect(backend.addr(), None).await.unwrap();
        assert_eq!(visit.version, "TLSv1_3");
        assert_eq!(visit.tls13_tickets, 0);
    }

    #[tokio::test]
    async fn http_answer_names_the_backend() {
        let backend = Backend::start(BackendOptions::new("b")).await.unwrap();
        let probe = Probe::new(options(Versions::Both, true), backend.addr()).unwrap();
        let visit = probe.connect(backend.addr(), None).await.unwrap();
        let answer = visit.http.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-backend"), Some("b"));
        assert_eq!(answer.body, b"backend=b\n");
    }

    #[tokio::test]
    async fn recorded_bytes_start_with_both_hellos() {
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let probe = Probe::new(options(Versions::Tls12, false), backend.addr()).unwrap();
        let visit = probe.connect(backend.addr(), None).await.unwrap();
        // A handshake record holding a ClientHello (1), a ServerHello (2).
        assert_eq!(visit.client_bytes.get(..1), Some(&[22u8][..]));
        assert_eq!(visit.client_bytes.get(5), Some(&1));
        assert_eq!(visit.server_bytes.get(5), Some(&2));
    }

    #[test]
    fn http_answers_are_framed_by_length_chunks_or_close() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Id: a\r\n\r\nabcdef";
        let a = HttpAnswer::parse(by_length).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(a.header("x-id"), Some("a"));
        assert!(HttpAnswer::is_complete(by_length));

        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(HttpAnswer::parse(chunked).unwrap().body, b"abcde");
        assert!(HttpAnswer::is_complete(chunked));
        assert!(!HttpAnswer::is_complete(&chunked[..chunked.len() - 4]));

        let to_close = b"HTTP/1.0 404 Not Found\r\n\r\nno";
        let a = HttpAnswer::parse(to_close).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (404, &b"no"[..]));
        assert!(!HttpAnswer::is_complete(to_close));

        assert!(HttpAnswer::parse(b"SSH-2.0-x\r\n\r\n").is_err());
        // Cut at our read limit, a body is kept as far as it was read.
        let long = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab";
        assert_eq!(HttpAnswer::parse_read(long, true).unwrap().body, b"ab");
        let chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n9\r\nde";
        assert_eq!(HttpAnswer::parse_read(chunks, true).unwrap().body, b"abcde");
        assert!(HttpAnswer::parse(chunks).is_err());
        assert!(HttpAnswer::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
    }
}
