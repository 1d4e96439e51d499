//! A recording TCP relay: what a router in the middle would read, byte for
//! byte, per connection and per direction.
//!
//! Put a [`Tap`] in front of any server (a rustls backend, `openssl
//! s_server`) and point any client at [`Tap::addr`]; each connection's two
//! byte streams come back as a [`Capture`]. The relay passes half-closes on
//! per direction, so TLS close_notify exchanges complete normally and the
//! capture ends where the real conversation ended.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The raw bytes of one relayed connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// Everything the client sent, in order.
    pub client: Vec<u8>,
    /// Everything the server sent, in order.
    pub server: Vec<u8>,
}

/// Which way bytes flow.
#[derive(Debug, Clone, Copy)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// State shared by the accept loop, the relays and [`Tap`].
#[derive(Debug)]
struct Recorded {
    /// One capture per accepted connection, in accept order.
    captures: Mutex<Vec<Capture>>,
    /// How many connections have finished in both directions; watched so
    /// that a test can wait for complete captures instead of sleeping.
    closed: watch::Sender<usize>,
}

/// A running relay to one target.
#[derive(Debug)]
pub struct Tap {
    /// Where clients connect.
    addr: SocketAddr,
    /// What has been recorded.
    recorded: Arc<Recorded>,
    /// The accept loop, which owns every relay task.
    task: JoinHandle<()>,
}

impl Tap {
    /// Listens on 127.0.0.1:0 and relays every connection to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<Tap> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let recorded = Arc::new(Recorded {
            captures: Mutex::new(Vec::new()),
            closed: watch::channel(0).0,
        });
        let task = tokio::spawn(accept_loop(listener, target, recorded.clone()));
        Ok(Tap {
            addr,
            recorded,
            task,
        })
    }

    /// The address to point clients at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of every connection so far, finished or not.
    pub fn captures(&self) -> Vec<Capture> {
        self.recorded.captures.lock().unwrap().clone()
    }

    /// Waits until at least `n` connections have closed in both directions,
    /// then returns every capture in accept order.
    pub async fn wait_closed(&self, n: usize, timeout: Duration) -> io::Result<Vec<Capture>> {
        let mut closed = self.recorded.closed.subscribe();
        tokio::time::timeout(timeout, closed.wait_for(|&c| c >= n))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("fewer than {n} tapped connections closed"),
                )
            })?
            .map_err(|_| io::Error::other("tap stopped"))?;
        Ok(self.captures())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, recorded: Arc<Recorded>) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let index = {
                        let mut captures = recorded.captures.lock().unwrap();
                        captures.push(Capture::default());
                        captures.len() - 1
                    };
                    relays.spawn(relay(client, target, index, recorded.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "tap accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = relays.join_next(), if !relays.is_empty() => {}
        }
    }
}

async fn relay(client: TcpStream, target: SocketAddr, index: usize, recorded: Arc<Recorded>) {
    if let Ok(server) = TcpStream::connect(target).await {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::join!(
            copy(
                client_read,
                server_write,
                Direction::ClientToServer,
                index,
                &recorded
            ),
            copy(
                server_read,
                client_write,
                Direction::ServerToClient,
                index,
                &recorded
            ),
        );
    }
    // A failed connect to the target still counts as a closed connection,
    // with empty captures, so waiters are not left hanging.
    recorded.closed.send_modify(|c| *c += 1);
}

/// Copies one direction, recording as it goes, and passes EOF on as a
/// half-close so the other direction can still finish.
async fn copy(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    index: usize,
    recorded: &Recorded,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(bytes) = buf.get(..n) else { break };
        {
            let mut captures = recorded.captures.lock().unwrap();
            if let Some(capture) = captures.get_mut(index) {
                match direction {
                    Direction::ClientToServer => capture.client.extend_from_slice(bytes),
                    Direction::ServerToClient => capture.server.extend_from_slice(bytes),
                }
            }
        }
        if to.write_all(bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, BackendOptions};
    use crate::client::{Client, ClientOptions};

    #[tokio::test]
    async fn tap_records_a_tls_handshake_in_both_directions() {
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let tap = Tap::start(backend.addr()).await.unwrap();
        let client = Client::new(ClientOptions::default()).unwrap();
        let reached = client.connect(tap.addr(), None).await.unwrap();
        assert_eq!(reached.backend, "a");

        let captures = tap.wait_closed(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(captures.len(), 1);
        let capture = &captures[0];
        // A handshake record, then ClientHello (1) / ServerHello (2).
        assert_eq!(capture.client[..2], [0x16, 0x03]);
        assert_eq!(capture.client[5], 1);
        assert_eq!(capture.server[..2], [0x16, 0x03]);
        assert_eq!(capture.server[5], 2);
    }

    #[tokio::test]
    async fn tap_keeps_connections_apart_and_in_order() {
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let tap = Tap::start(backend.addr()).await.unwrap();
        let client = Client::new(ClientOptions::default()).unwrap();
        client.connect(tap.addr(), None).await.unwrap();
        let second = client.connect(tap.addr(), None).await.unwrap();
        assert!(second.client_resumed());

        let captures = tap.wait_closed(2, Duration::from_secs(5)).await.unwrap();
        assert_eq!(captures.len(), 2);
        // Only the resuming ClientHello carries a pre_shared_key, which makes
        // it longer than the first.
        assert_ne!(captures[0].client, captures[1].client);
        assert!(captures.iter().all(|c| c.client[0] == 0x16));
    }

    #[tokio::test]
    async fn tap_to_a_dead_target_closes_with_empty_captures() {
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let tap = Tap::start(dead).await.unwrap();
        let mut stream = TcpStream::connect(tap.addr()).await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        let captures = tap.wait_closed(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(captures, vec![Capture::default()]);
    }
}
