//! Copying both ways once a backend answered, while the server's cleartext
//! flight (and, after a HelloRetryRequest, the client's second hello) passes
//! through the inspector. Bytes go on as they arrive: the inspector only
//! watches, it never holds anything back. Once a direction's handshake is
//! encrypted it is a plain copy.
//!
//! A half-close is passed on as a half-close (the other direction keeps
//! flowing), a reset as a reset, and a connection with no bytes either way
//! for the idle timeout is closed.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clock::Clock;
use crate::inspect::{Handshake, Status};

const BUF: usize = 16 * 1024;

/// Which side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// How a relayed connection ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both directions closed cleanly.
    Closed { to_server: u64, to_client: u64 },
    /// No bytes either way for the idle timeout.
    Idle,
    /// `Side` reset (or failed); the other side should be reset too.
    Reset(Side, io::Error),
}

/// What the relay reports about the server's cleartext flight, once.
pub trait OnServerFlight: Sync {
    /// The server side of the inspector finished (`Done`).
    fn done(&self, hs: &Handshake);
    /// The server side could not be read (malformed, alert, not TLS).
    fn unreadable(&self, status: &Status);
}

struct Dir<'a> {
    /// The inspector while either direction still needs it; dropped (with
    /// its hello buffers) as soon as neither does, so a long-lived
    /// connection holds only its copy buffers.
    hs: &'a Mutex<Option<Handshake>>,
    clock: &'a Clock,
    last_activity: &'a AtomicU64,
}

/// Relays until both directions are closed, a side resets, or the idle
/// timeout passes. `first_bytes` were already read from the server. With
/// no handshake to watch it is a plain copy from the start.
pub async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    hs: Option<Handshake>,
    first_bytes: &[u8],
    idle: Duration,
    clock: &Clock,
    flight: &dyn OnServerFlight,
) -> RelayEnd {
    let inspect = hs.is_some();
    let hs = Mutex::new(hs);
    let last_activity = AtomicU64::new(clock.now_ms());
    let dir = Dir { hs: &hs, clock, last_activity: &last_activity };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();

    let to_server = async {
        let mut buf = vec![0u8; BUF];
        let mut total = 0u64;
        let mut inspecting = inspect;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) => {
                    // Half-close: the server may still be answering.
                    let _ = sw.shutdown().await;
                    return Ok(total);
                }
                Ok(n) => n,
                Err(e) => return Err((Side::Client, e)),
            };
            let data = &buf[..n];
            dir.touch();
            if inspecting {
                let mut guard = dir.hs.lock().unwrap();
                match guard.as_mut() {
                    Some(h) if h.wants_client() => {
                        // A broken second hello is the backend's to reject;
                        // the router has nothing to learn from it either way.
                        let _ = h.feed_client(data);
                    }
                    _ => inspecting = false,
                }
            }
            sw.write_all(data).await.map_err(|e| (Side::Server, e))?;
            total += n as u64;
        }
    };

    let to_client = async {
        let mut buf = vec![0u8; BUF];
        let mut total = 0u64;
        let mut inspecting = inspect;
        let mut pending: &[u8] = first_bytes;
        loop {
            let n = if !pending.is_empty() {
                let n = pending.len().min(BUF);
                buf[..n].copy_from_slice(&pending[..n]);
                pending = &pending[n..];
                n
            } else {
                match sr.read(&mut buf).await {
                    Ok(0) => {
                        let _ = cw.shutdown().await;
                        return Ok(total);
                    }
                    Ok(n) => n,
                    Err(e) => return Err((Side::Server, e)),
                }
            };
            let data = &buf[..n];
            dir.touch();
            if inspecting {
                let mut guard = dir.hs.lock().unwrap();
                if let Some(h) = guard.as_mut() {
                    match h.feed_server(data) {
                        Status::NeedMore => {}
                        Status::Done => {
                            inspecting = false;
                            flight.done(h);
                        }
                        other => {
                            inspecting = false;
                            flight.unreadable(&other);
                        }
                    }
                    if !inspecting && !h.wants_client() {
                        *guard = None;
                    }
                } else {
                    inspecting = false;
                }
            }
            cw.write_all(data).await.map_err(|e| (Side::Client, e))?;
            total += n as u64;
        }
    };

    let watchdog = async {
        let idle_ms = idle.as_millis() as u64;
        loop {
            let since = clock.now_ms().saturating_sub(last_activity.load(Ordering::Relaxed));
            if since >= idle_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(idle_ms - since)).await;
        }
    };

    tokio::select! {
        r = async { tokio::try_join!(to_server, to_client) } => match r {
            Ok((to_server, to_client)) => RelayEnd::Closed { to_server, to_client },
            Err((side, e)) => RelayEnd::Reset(side, e),
        },
        _ = watchdog => RelayEnd::Idle,
    }
}

impl Dir<'_> {
    fn touch(&self) {
        self.last_activity.store(self.clock.now_ms(), Ordering::Relaxed);
    }
}
