//! Regenerates the committed handshake captures: the fuzz seeds in
//! `fuzz/seeds/` and the operator example in `docs/captures/`.
//!
//! ```text
//! cargo run --example capture            # writes into this checkout
//! cargo run --example capture -- DIR     # writes DIR/fuzz/seeds, DIR/docs/captures
//! ```
//!
//! Every capture is a real handshake between real peers (rustls both
//! sides, or OpenSSL both sides) recorded by `peer::tap`, one connection per
//! file pair: `<scenario>.client.bin` is what the client sent,
//! `<scenario>.server.bin` what the server sent, to the end of the
//! connection. Keys and randoms differ on every run, so regenerating changes
//! every byte; the scenario, not the bytes, is what each name promises.
//! Needs `openssl` on PATH for the `openssl-*` scenarios.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions};
use stickytls_peers::client::{Client, ClientOptions};
use stickytls_peers::openssl::{SClient, SClientOptions, SServer, SServerOptions};
use stickytls_peers::tap::{Capture, Tap};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let seeds = root.join("fuzz/seeds");
    let docs = root.join("docs/captures");
    std::fs::create_dir_all(&seeds)?;
    std::fs::create_dir_all(&docs)?;

    // TLS 1.2 with RFC 5077 tickets: full handshake (server sends
    // NewSessionTicket in the clear), then the ticket offered and accepted.
    let [full, resumed] = rustls_pair(
        backend(Versions::Tls12, true, false),
        client(Versions::Tls12, true, false),
    )
    .await?;
    write(&seeds, "rustls-tls12-full-ticket", &full)?;
    write(&seeds, "rustls-tls12-ticket-resumption", &resumed)?;

    // TLS 1.2 session IDs only: the ServerHello's session ID is what a
    // router learns, and the second ClientHello offers it back.
    let [full, resumed] = rustls_pair(
        backend(Versions::Tls12, false, true),
        client(Versions::Tls12, false, false),
    )
    .await?;
    write(&seeds, "rustls-tls12-full-session-id", &full)?;
    write(&seeds, "rustls-tls12-session-id-resumption", &resumed)?;

    // TLS 1.3: full, then PSK resumption with the ticket from the first.
    let [full, resumed] = rustls_pair(
        backend(Versions::Tls13, true, false),
        client(Versions::Tls13, true, false),
    )
    .await?;
    write(&seeds, "rustls-tls13-full", &full)?;
    write(&seeds, "rustls-tls13-psk-resumption", &resumed)?;
    write(&docs, "tls13-resumption", &resumed)?;

    // TLS 1.3 with the X25519MLKEM768 key share: a ~1.5 KB ClientHello.
    let [pq, _] = rustls_pair(
        backend(Versions::Tls13, true, false),
        client(Versions::Tls13, true, true),
    )
    .await?;
    write(&seeds, "rustls-tls13-pq-hello", &pq)?;

    // HelloRetryRequest: the client's only key share is X25519, the server
    // accepts only secp256r1, so the client sends a second ClientHello.
    let hrr_backend = BackendOptions {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::SECP256R1],
        ..backend(Versions::Tls13, true, false)
    };
    let [hrr, _] = rustls_pair(hrr_backend, client(Versions::Tls13, true, false)).await?;
    write(&seeds, "rustls-tls13-hrr", &hrr)?;

    // OpenSSL, ClientHello split over records of at most 512 bytes by
    // -max_send_frag and a long ALPN list.
    let long_alpn: Vec<String> = (0..8)
        .map(|i| format!("proto-{i}-{}", "x".repeat(90)))
        .collect();
    let [fragmented] = openssl_run(
        SServerOptions::new("openssl"),
        SClientOptions {
            alpn: Some(long_alpn.join(",")),
            max_send_frag: Some(512),
            ..SClientOptions::default()
        },
    )
    .await?;
    write(&seeds, "openssl-tls13-fragmented-hello", &fragmented)?;

    // OpenSSL TLS 1.2 without tickets: session-ID resumption.
    let [full, resumed] = openssl_run(
        SServerOptions {
            versions: Versions::Tls12,
            tickets: false,
            ..SServerOptions::new("openssl")
        },
        SClientOptions {
            versions: Versions::Tls12,
            no_ticket: true,
            ..SClientOptions::default()
        },
    )
    .await?;
    write(&seeds, "openssl-tls12-full-session-id", &full)?;
    write(&seeds, "openssl-tls12-session-id-resumption", &resumed)?;
    Ok(())
}

fn backend(versions: Versions, tickets: bool, session_cache: bool) -> BackendOptions {
    BackendOptions {
        versions,
        tickets,
        session_cache,
        ..BackendOptions::new("seed")
    }
}

fn client(versions: Versions, tls12_tickets: bool, pq: bool) -> Client {
    Client::new(ClientOptions {
        versions,
        tls12_tickets,
        pq,
        ..ClientOptions::default()
    })
    .expect("valid client options")
}

/// Two connections from one client through a tap; checks that the first
/// was full and the second resumed, so a seed's name never lies.
async fn rustls_pair(server: BackendOptions, client: Client) -> io::Result<[Capture; 2]> {
    let backend = Backend::start(server).await?;
    let tap = Tap::start(backend.addr()).await?;
    let first = client.connect(tap.addr(), None).await?;
    let second = client.connect(tap.addr(), None).await?;
    let resumes = backend.handshakes().iter().any(|h| h.resumed);
    if first.server_resumed || (resumes && !second.server_resumed) {
        return Err(io::Error::other(format!(
            "unexpected handshakes: {first:?} {second:?}"
        )));
    }
    two(tap.wait_closed(2, WAIT).await?)
}

/// `N` s_client runs against one s_server through a tap; the second and
/// later runs offer the saved session and must resume.
async fn openssl_run<const N: usize>(
    server: SServerOptions,
    client: SClientOptions,
) -> io::Result<[Capture; N]> {
    let server = SServer::start(server).await?;
    let tap = Tap::start(server.addr()).await?;
    let client = SClient::new(client)?;
    for i in 0..N {
        let report = client.connect(tap.addr(), None).await?;
        if report.reused != (i > 0) {
            return Err(io::Error::other(format!(
                "run {i} reused={}: {}",
                report.reused, report.transcript
            )));
        }
    }
    tap.wait_closed(N, WAIT)
        .await?
        .try_into()
        .map_err(|c: Vec<Capture>| io::Error::other(format!("{} connections", c.len())))
}

fn two(captures: Vec<Capture>) -> io::Result<[Capture; 2]> {
    captures
        .try_into()
        .map_err(|c: Vec<Capture>| io::Error::other(format!("{} connections", c.len())))
}

fn write(dir: &Path, scenario: &str, capture: &Capture) -> io::Result<()> {
    std::fs::write(dir.join(format!("{scenario}.client.bin")), &capture.client)?;
    std::fs::write(dir.join(format!("{scenario}.server.bin")), &capture.server)?;
    println!(
        "{scenario}: client {} bytes, server {} bytes",
        capture.client.len(),
        capture.server.len()
    );
    Ok(())
}
