//! The victims: real TLS clients (rustls here; `openssl s_client` through
//! `stickytls_peers::openssl::SClient` where an attack needs a TLS 1.2
//! session ID in clear), each with its own session store, that ask the
//! server who it is. Whether a resumption reached its owner is read from
//! the server's own answer and the client's handshake kind, never from
//! the router.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};
use stickytls_peers::cert::TestCa;
use stickytls_peers::openssl::WHOAMI_REQUEST;
use stickytls_peers::{Versions, classic_kx_groups, provider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::hello::connect_from;

/// One client: a session store shared by its connections.
#[derive(Debug, Clone)]
pub struct Victim {
    config: Arc<ClientConfig>,
}

/// What one connection reached.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The server's own `backend=NAME`.
    pub backend: String,
    /// The client resumed its session.
    pub resumed: bool,
}

impl Victim {
    /// A client of `versions` that resumes (TLS 1.2 by session ID only, so
    /// the router keys on what a session cache server hands out), or that
    /// never does (`resume` false: the flood's one-hit clients).
    pub fn new(versions: Versions, resume: bool) -> Victim {
        let mut config = ClientConfig::builder_with_provider(provider(classic_kx_groups()))
            .with_protocol_versions(versions.rustls())
            .expect("rustls supports both versions")
            .with_root_certificates(TestCa::shared().root_store())
            .with_no_client_auth();
        config.resumption = if resume {
            Resumption::in_memory_sessions(16).tls12_resumption(Tls12Resumption::SessionIdOnly)
        } else {
            Resumption::disabled()
        };
        Victim {
            config: Arc::new(config),
        }
    }

    fn server_name() -> ServerName<'static> {
        ServerName::try_from("localhost").expect("a valid name")
    }

    /// Connects from `source`, asks `GET /whoami`, reads to the server's
    /// close. Bounded by `bound`.
    pub async fn visit(
        &self,
        to: SocketAddr,
        source: IpAddr,
        bound: Duration,
    ) -> io::Result<Visit> {
        tokio::time::timeout(bound, self.visit_inner(to, source))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
    }

    async fn visit_inner(&self, to: SocketAddr, source: IpAddr) -> io::Result<Visit> {
        let tcp = connect_from(source, to).await?;
        let mut tls = TlsConnector::from(self.config.clone())
            .connect(Self::server_name(), tcp)
            .await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
        tls.write_all(WHOAMI_REQUEST).await?;
        tls.flush().await?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Read to the server's close; a close without close_notify (as
        // s_server's -WWW does) ends the answer too, once it is there.
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if answer.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&answer);
        let backend = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("backend="))
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| io::Error::other(format!("not a whoami answer: {text:?}")))?
            .to_string();
        Ok(Visit { backend, resumed })
    }

    /// The first flight a new connection would send: what an attacker
    /// watching this client's hellos reads its PSK identity from. Takes a
    /// TLS 1.3 ticket out of the store, as a real connection would.
    pub fn hello(&self) -> io::Result<Vec<u8>> {
        let mut conn = ClientConnection::new(self.config.clone(), Self::server_name())
            .map_err(io::Error::other)?;
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out)?;
        }
        Ok(out)
    }
}
