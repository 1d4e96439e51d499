//! Client traffic the process-level tests share: TLS 1.2 clients, a
//! continuous load that counts what failed, and where source-hash would
//! send an address (to pick addresses the balancer sends away from a
//! session's owner, so that only affinity can bring it back).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use stickytls::affinity::clients::ClientPrefix;
use stickytls::balance::rendezvous_score;
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions};

/// A TLS 1.2 client, resuming by session ID or (with `tickets`) ticket.
pub fn tls12(tickets: bool) -> Client {
    Client::new(ClientOptions {
        versions: Versions::Tls12,
        tls12_tickets: tickets,
        ..Default::default()
    })
    .unwrap()
}

/// Fresh TLS connections in a loop, each from an address of its own on
/// 127.3.0.0/16, until `stop`: (connections made, connections failed).
pub fn continuous_load(
    router: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let (mut made, mut failed) = (0u64, 0u64);
        let client = Client::new(ClientOptions {
            resumption: false,
            ..Default::default()
        })
        .unwrap();
        let mut n: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let ip = IpAddr::from([127, 3, (n >> 8) as u8, n as u8]);
            match client.connect(router, Some(ip)).await {
                Ok(_) => made += 1,
                Err(e) => {
                    eprintln!("connection {n} failed: {e}");
                    failed += 1;
                }
            }
        }
        (made, failed)
    })
}

/// Where source-hash puts `ip` among `backends` (name, weight), as the
/// router computes it.
pub fn source_hash<'a>(ip: IpAddr, backends: &[(&'a str, u32)]) -> &'a str {
    let client = ClientPrefix::new(ip, 32, 64).to_bytes();
    backends
        .iter()
        .max_by(|(x, wx), (y, wy)| {
            rendezvous_score(&client, x, *wx)
                .total_cmp(&rendezvous_score(&client, y, *wy))
                .then_with(|| y.cmp(x))
        })
        .map(|(n, _)| *n)
        .expect("at least one backend")
}
