//! A rustls client that remembers sessions, binds a chosen source address,
//! and can dribble its first flight in tiny writes.
//!
//! One [`Client`] is one browser, so to speak: its session store is shared by
//! every connection it makes, so the second `connect` to the same name
//! offers a resumption of the first. What it reached is read from the
//! backend's answer line (see [`super::backend`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::client::{Resumption, Tls12Resumption};
use rustls::crypto::SupportedKxGroup;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Sleep;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::backend::Identity;
use super::cert::TestCa;
use super::{Versions, classic_kx_groups, pq_kx_groups, provider, version_name};

/// How a [`Client`] is set up.
#[derive(Clone)]
pub struct ClientOptions {
    /// Versions the client offers.
    pub versions: Versions,
    /// Keep sessions between connections and offer them again.
    pub resumption: bool,
    /// On TLS 1.2, offer RFC 5077 tickets as well as session IDs. Off, the
    /// client can only resume by session ID, whatever the server supports.
    pub tls12_tickets: bool,
    /// Offer the X25519MLKEM768 hybrid key share first (a ~1.5 KB
    /// ClientHello). Off, only classic groups are offered.
    pub pq: bool,
    /// Overrides `pq`: the exact groups, in order. The first one's key share
    /// is what the ClientHello carries.
    pub kx_groups: Option<Vec<&'static dyn SupportedKxGroup>>,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<Vec<u8>>,
    /// SNI to send and the name the certificate is checked against. `None`
    /// connects by IP (127.0.0.1) and sends no SNI at all.
    pub sni: Option<String>,
    /// The CA to trust; `None` trusts [`TestCa::shared`].
    pub ca: Option<CertificateDer<'static>>,
    /// Bound on each connect and each request, so a wedged router fails the
    /// test instead of hanging it.
    pub timeout: Duration,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("versions", &self.versions)
            .field("resumption", &self.resumption)
            .field("tls12_tickets", &self.tls12_tickets)
            .field("pq", &self.pq)
            .field(
                "kx_groups",
                &self
                    .kx_groups
                    .as_ref()
                    .map(|g| g.iter().map(|g| g.name()).collect::<Vec<_>>()),
            )
            .field("alpn", &self.alpn)
            .field("sni", &self.sni)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    /// Both versions, resumption with tickets, classic key shares, SNI
    /// `localhost`, 10 s timeout.
    fn default() -> Self {
        ClientOptions {
            versions: Versions::Both,
            resumption: true,
            tls12_tickets: true,
            pq: false,
            kx_groups: None,
            alpn: Vec::new(),
            sni: Some("localhost".to_string()),
            ca: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// How the client writes its first flight (the ClientHello, and nothing
/// else for TLS 1.3) to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Writes {
    /// As rustls produces it: normally one write.
    #[default]
    Whole,
    /// At most `chunk` bytes per write, with `gap` between writes, until the
    /// server's first byte arrives. `chunk: 1` with a small gap makes the
    /// router see the ClientHello in many separate segments.
    Dribble {
        /// Largest write, at least 1.
        chunk: usize,
        /// Pause between writes.
        gap: Duration,
    },
}

impl Writes {
    /// One byte per write, 1 ms apart.
    pub fn bytewise() -> Writes {
        Writes::Dribble {
            chunk: 1,
            gap: Duration::from_millis(1),
        }
    }
}

/// What one connection reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Reached {
    /// The backend's name, from its answer.
    pub backend: String,
    /// The backend's view: did it resume?
    pub server_resumed: bool,
    /// The client's view of the handshake.
    pub client_kind: HandshakeKind,
    /// `TLSv1_2` or `TLSv1_3`, as the client negotiated it.
    pub version: String,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The client's socket address (source IP and port).
    pub local: SocketAddr,
}

impl Reached {
    /// Whether the client resumed. Agrees with `server_resumed` unless
    /// something between them is broken.
    pub fn client_resumed(&self) -> bool {
        self.client_kind == HandshakeKind::Resumed
    }
}

/// A TLS client with a session store shared by its connections.
#[derive(Debug, Clone)]
pub struct Client {
    /// Shared by every connection, which is what carries the session store.
    config: Arc<ClientConfig>,
    /// What to send as SNI and verify against.
    server_name: ServerName<'static>,
    /// Per-operation bound.
    timeout: Duration,
}

impl Client {
    /// Builds a client; fails only on inconsistent options (for example a
    /// version with no cipher suites).
    pub fn new(options: ClientOptions) -> Result<Client, rustls::Error> {
        let kx_groups = match options.kx_groups {
            Some(groups) => groups,
            None if options.pq => pq_kx_groups(),
            None => classic_kx_groups(),
        };
        let mut roots = RootCertStore::empty();
        let ca = options.ca.unwrap_or_else(|| TestCa::shared().cert());
        roots.add(ca)?;
        let mut config = ClientConfig::builder_with_provider(provider(kx_groups))
            .with_protocol_versions(options.versions.rustls())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = options.alpn;
        config.resumption = if options.resumption {
            Resumption::in_memory_sessions(64).tls12_resumption(if options.tls12_tickets {
                Tls12Resumption::SessionIdOrTickets
            } else {
                Tls12Resumption::SessionIdOnly
            })
        } else {
            Resumption::disabled()
        };
        let server_name = match options.sni {
            Some(name) => ServerName::try_from(name)
                .map_err(|_| rustls::Error::General("invalid SNI".into()))?,
            None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
        };
        Ok(Client {
            config: Arc::new(config),
            server_name,
            timeout: options.timeout,
        })
    }

    /// Connects, asks once who answered, closes cleanly, and reports.
    /// `source` picks the source IP (for example 127.0.0.2) so a test can
    /// play several clients; the port is always ephemeral.
    pub async fn connect(&self, addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Reached> {
        self.connect_with(addr, source, Writes::Whole).await
    }

    /// [`connect`](Client::connect), writing the first flight as `writes`
    /// says.
    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
        writes: Writes,
    ) -> io::Result<Reached> {
        let conn = self.open(addr, source, writes).await?;
        let reached = conn.reached().clone();
        conn.close().await?;
        Ok(reached)
    }

    /// Connects and asks once, leaving the connection open for more
    /// requests, or for a test to watch it die when a backend is killed.
    pub async fn open(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
        writes: Writes,
    ) -> io::Result<Connection> {
        tokio::time::timeout(self.timeout, self.open_inner(addr, source, writes))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS connect timed out"))?
    }

    async fn open_inner(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
        writes: Writes,
    ) -> io::Result<Connection> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(addr).await?;
        // Without this, Nagle would merge a dribbled ClientHello back into
        // a few segments.
        tcp.set_nodelay(true)?;
        let local = tcp.local_addr()?;
        let io = Dribble::new(tcp, writes);
        let tls = TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), io)
            .await?;
        let mut conn = Connection {
            stream: BufReader::new(tls),
            reached: None,
            local,
            timeout: self.timeout,
        };
        let identity = conn.ask_inner().await?;
        let (_, tls) = conn.stream.get_ref().get_ref();
        conn.reached = Some(Reached {
            backend: identity.backend,
            server_resumed: identity.resumed,
            client_kind: tls.handshake_kind().unwrap_or(HandshakeKind::Full),
            version: tls.protocol_version().map(version_name).unwrap_or_default(),
            alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
            local,
        });
        Ok(conn)
    }

    /// The bytes of the first flight a fresh connection would send: the
    /// ClientHello record(s), exactly as rustls writes them. Takes a session
    /// from the store if one is there, as a real connection would.
    pub fn client_hello(&self) -> Result<Vec<u8>, rustls::Error> {
        let mut conn = ClientConnection::new(self.config.clone(), self.server_name.clone())?;
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        }
        Ok(out)
    }
}

/// An open connection to a backend, after its first answer.
#[derive(Debug)]
pub struct Connection {
    /// The TLS stream, buffered to read answer lines.
    stream: BufReader<TlsStream<Dribble>>,
    /// Set once the first answer is in.
    reached: Option<Reached>,
    /// The client's socket address.
    local: SocketAddr,
    /// Per-request bound.
    timeout: Duration,
}

impl Connection {
    /// What the first answer said.
    pub fn reached(&self) -> &Reached {
        self.reached.as_ref().expect("set by Client::open")
    }

    /// The client's socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends one request line and reads the backend's answer. Fails if the
    /// backend (or the router) has closed the connection.
    pub async fn ask(&mut self) -> io::Result<Identity> {
        tokio::time::timeout(self.timeout, self.ask_inner())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer from backend"))?
    }

    async fn ask_inner(&mut self) -> io::Result<Identity> {
        self.stream.write_all(b"who\n").await?;
        self.stream.flush().await?;
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the backend answered",
            ));
        }
        Identity::parse(&line).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a backend answer: {line:?}"),
            )
        })
    }

    /// Sends close_notify, half-closes, and waits for the backend's close.
    pub async fn close(mut self) -> io::Result<()> {
        tokio::time::timeout(self.timeout, async {
            self.stream.shutdown().await?;
            let mut rest = Vec::new();
            // Drain to the backend's close so its close_notify is read and
            // a tap sees both directions end.
            tokio::io::AsyncReadExt::read_to_end(&mut self.stream, &mut rest).await?;
            Ok(())
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "backend did not close"))?
    }
}

/// A TCP stream whose writes are split and spaced until the first byte is
/// read, so the first flight reaches the peer in pieces.
#[derive(Debug)]
pub struct Dribble {
    /// The socket.
    inner: TcpStream,
    /// `None` once the first flight is over (or if never dribbling).
    dribble: Option<(usize, Duration)>,
    /// The pause before the next write may go out.
    pause: Option<Pin<Box<Sleep>>>,
}

impl Dribble {
    fn new(inner: TcpStream, writes: Writes) -> Dribble {
        let dribble = match writes {
            Writes::Whole => None,
            Writes::Dribble { chunk, gap } => Some((chunk.max(1), gap)),
        };
        Dribble {
            inner,
            dribble,
            pause: None,
        }
    }
}

impl AsyncRead for Dribble {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            // The server answered, so the first flight is complete.
            self.dribble = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Dribble {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some((chunk, gap)) = self.dribble else {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        };
        if let Some(pause) = self.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let piece = buf.get(..chunk.min(buf.len())).unwrap_or(buf);
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, piece))?;
        if !gap.is_zero() {
            self.pause = Some(Box::pin(tokio::time::sleep(gap)));
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
    use std::net::Ipv4Addr;

    use super::*;
    use crate::backend::{Backend, BackendOptions, BlackHole};

    fn backend(
        name: &str,
        versions: Versions,
        tickets: bool,
        session_cache: bool,
    ) -> BackendOptions {
        BackendOptions {
            versions,
            tickets,
            session_cache,
            ..BackendOptions::new(name)
        }
    }

    fn client(versions: Versions) -> Client {
        Client::new(ClientOptions {
            versions,
            ..ClientOptions::default()
        })
        .unwrap()
    }

    /// Two connections from one client: the first is full, the second
    /// resumed, and client and backend agree on both.
    async fn assert_resumes_on_second_connection(
        server: BackendOptions,
        client: Client,
        version: &str,
    ) {
        let backend = Backend::start(server).await.unwrap();
        let first = client.connect(backend.addr(), None).await.unwrap();
        assert_eq!(first.backend, backend.name());
        assert_eq!(first.version, version);
        assert!(
            !first.server_resumed && !first.client_resumed(),
            "{first:?}"
        );
        let second = client.connect(backend.addr(), None).await.unwrap();
        assert!(
            second.server_resumed && second.client_resumed(),
            "{second:?}"
        );
        assert_eq!(backend.resumed(), 1);
        assert_eq!(backend.connections(), 2);
    }

    #[tokio::test]
    async fn tls12_ticket_resumes_on_second_connection() {
        assert_resumes_on_second_connection(
            backend("a", Versions::Tls12, true, false),
            client(Versions::Tls12),
            "TLSv1_2",
        )
        .await;
    }

    #[tokio::test]
    async fn tls12_session_id_resumes_on_second_connection() {
        let client = Client::new(ClientOptions {
            versions: Versions::Tls12,
            tls12_tickets: false,
            ..ClientOptions::default()
        })
        .unwrap();
        assert_resumes_on_second_connection(
            backend("a", Versions::Tls12, false, true),
            client,
            "TLSv1_2",
        )
        .await;
    }

    #[tokio::test]
    async fn tls13_psk_resumes_on_second_connection() {
        assert_resumes_on_second_connection(
            backend("a", Versions::Tls13, true, false),
            client(Versions::Both),
            "TLSv1_3",
        )
        .await;
    }

    #[tokio::test]
    async fn tls13_stateful_ticket_resumes_with_only_a_session_cache() {
        assert_resumes_on_second_connection(
            backend("a", Versions::Tls13, false, true),
            client(Versions::Tls13),
            "TLSv1_3",
        )
        .await;
    }

    #[tokio::test]
    async fn backend_without_tickets_or_cache_never_resumes() {
        for versions in [Versions::Tls12, Versions::Tls13] {
            let backend = Backend::start(backend("a", versions, false, false))
                .await
                .unwrap();
            let client = client(versions);
            for _ in 0..2 {
                let reached = client.connect(backend.addr(), None).await.unwrap();
                assert!(!reached.server_resumed && !reached.client_resumed());
            }
        }
    }

    #[tokio::test]
    async fn ticket_from_one_backend_does_not_resume_on_another() {
        let a = Backend::start(BackendOptions::new("a")).await.unwrap();
        let b = Backend::start(BackendOptions::new("b")).await.unwrap();
        let client = client(Versions::Both);
        client.connect(a.addr(), None).await.unwrap();
        let reached = client.connect(b.addr(), None).await.unwrap();
        assert_eq!(reached.backend, "b");
        assert!(
            !reached.server_resumed,
            "backends must not share ticket keys"
        );
    }

    #[tokio::test]
    async fn source_address_is_what_the_backend_sees() {
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let reached = client(Versions::Both)
            .connect(backend.addr(), Some(source))
            .await
            .unwrap();
        assert_eq!(reached.local.ip(), source);
        assert_eq!(backend.peer_ips(), vec![source]);
    }

    #[tokio::test]
    async fn pq_client_hello_is_large_and_offers_x25519mlkem768_first() {
        let pq = Client::new(ClientOptions {
            pq: true,
            ..ClientOptions::default()
        })
        .unwrap();
        let hello = pq.client_hello().unwrap();
        assert!(hello.len() > 1200, "{} bytes", hello.len());
        assert_eq!(first_key_share_group(&hello), Some(0x11ec));

        let classic = client(Versions::Both).client_hello().unwrap();
        assert!(classic.len() < 600, "{} bytes", classic.len());
        assert_eq!(first_key_share_group(&classic), Some(0x001d));
    }

    #[tokio::test]
    async fn pq_client_hello_in_one_byte_writes_completes_the_handshake() {
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let client = Client::new(ClientOptions {
            pq: true,
            ..ClientOptions::default()
        })
        .unwrap();
        let reached = client
            .connect_with(
                backend.addr(),
                None,
                Writes::Dribble {
                    chunk: 1,
                    gap: Duration::ZERO,
                },
            )
            .await
            .unwrap();
        assert_eq!(reached.backend, "a");
        assert_eq!(reached.version, "TLSv1_3");
    }

    #[tokio::test]
    async fn client_share_the_server_does_not_support_gets_a_hello_retry() {
        let backend = Backend::start(BackendOptions {
            kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::SECP256R1],
            ..BackendOptions::new("a")
        })
        .await
        .unwrap();
        let reached = client(Versions::Tls13)
            .connect(backend.addr(), None)
            .await
            .unwrap();
        assert_eq!(
            reached.client_kind,
            HandshakeKind::FullWithHelloRetryRequest
        );
    }

    #[tokio::test]
    async fn alpn_is_negotiated_when_both_sides_offer_it() {
        let backend = Backend::start(BackendOptions {
            alpn: vec![b"h2".to_vec()],
            ..BackendOptions::new("a")
        })
        .await
        .unwrap();
        let client = Client::new(ClientOptions {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..ClientOptions::default()
        })
        .unwrap();
        let reached = client.connect(backend.addr(), None).await.unwrap();
        assert_eq!(reached.alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn killed_backend_drops_live_connections_and_refuses_new_ones() {
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let client = client(Versions::Both);
        let mut open = client
            .open(backend.addr(), None, Writes::Whole)
            .await
            .unwrap();
        assert_eq!(open.ask().await.unwrap().backend, "a");
        backend.kill().await;
        assert!(open.ask().await.is_err());
        let refused = TcpStream::connect(backend.addr()).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn black_hole_accepts_but_the_handshake_times_out() {
        let hole = BlackHole::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = Client::new(ClientOptions {
            timeout: Duration::from_millis(300),
            ..ClientOptions::default()
        })
        .unwrap();
        let err = client.connect(hole.addr(), None).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(hole.accepted(), 1);
    }

    /// The group of the first KeyShareEntry in a single-record ClientHello.
    /// Test-only walk: the real parser lives in `inspect`.
    fn first_key_share_group(record: &[u8]) -> Option<u16> {
        fn u16_at(b: &[u8], i: usize) -> Option<usize> {
            Some(usize::from(*b.get(i)?) << 8 | usize::from(*b.get(i + 1)?))
        }
        // record header 5, handshake header 4, version 2, random 32
        let mut i = 5 + 4 + 2 + 32;
        i += 1 + usize::from(*record.get(i)?); // session_id
        i += 2 + u16_at(record, i)?; // cipher_suites
        i += 1 + usize::from(*record.get(i)?); // compression_methods
        let end = i + 2 + u16_at(record, i)?;
        i += 2;
        while i + 4 <= end {
            let (kind, len) = (u16_at(record, i)?, u16_at(record, i + 2)?);
            if kind == 51 {
                // client_shares<2..2^16-1>, then the first entry's group
                return u16_at(record, i + 6).map(|g| g as u16);
            }
            i += 4 + len;
        }
        None
    }
}
