//! A real TLS 1.2 client (`openssl s_client`) that offers a session ID it
//! does not own. A TLS 1.2 full handshake only shows as full to the router
//! once the server's ChangeCipherSpec passes, after the client's key
//! exchange, so a hand-made hello that stops at the ServerHello is not
//! enough: the attacker completes the handshake. It takes a session of its
//! own, puts the victim's session ID into it (the session ID is sent in
//! clear by the victim), and offers it with cipher suites that leave out the
//! session's; the master secret is the attacker's, so nothing is resumed,
//! but the hello carries the victim's ID.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use stickytls_peers::cert::TestCa;
use stickytls_peers::openssl::{SClientReport, WHOAMI_REQUEST};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The attacker's session, saved by its own connection.
#[derive(Debug)]
pub struct Forger {
    /// Its session in DER.
    der: Vec<u8>,
    /// Where the session ID sits in `der`.
    id_at: usize,
    dir: PathBuf,
    ca: PathBuf,
}

async fn run(mut command: Command, stdin: &[u8]) -> io::Result<String> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await?;
    }
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "openssl timed out"))??;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s_client(to: SocketAddr, from: IpAddr, ca: &Path) -> Command {
    let mut c = Command::new("openssl");
    c.args([
        "s_client",
        "-tls1_2",
        "-no_ticket",
        "-ign_eof",
        "-servername",
        "localhost",
    ])
    .args(["-connect", &to.to_string()])
    .args(["-bind", &SocketAddr::new(from, 0).to_string()])
    .arg("-CAfile")
    .arg(ca);
    c
}

impl Forger {
    /// Makes the attacker's own TLS 1.2 session through `to`.
    pub async fn new(dir: &Path, to: SocketAddr, from: IpAddr) -> io::Result<Forger> {
        std::fs::create_dir_all(dir)?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, TestCa::shared().cert_pem())?;
        let own = dir.join("own.pem");
        let mut c = s_client(to, from, &ca);
        c.arg("-sess_out").arg(&own);
        let report = SClientReport::parse(&run(c, WHOAMI_REQUEST).await?);
        let id = report
            .session_id
            .and_then(|id| hex::decode(id).ok())
            .ok_or_else(|| io::Error::other("the attacker's s_client got no session ID"))?;
        let der_path = dir.join("own.der");
        let mut c = Command::new("openssl");
        c.args(["sess_id", "-outform", "DER", "-in"])
            .arg(&own)
            .arg("-out")
            .arg(&der_path);
        run(c, b"").await?;
        let der = std::fs::read(&der_path)?;
        // The session ID is an OCTET STRING of its length: 04 20 ID.
        let mut needle = vec![0x04, u8::try_from(id.len()).unwrap_or(0)];
        needle.extend(&id);
        let id_at = der
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .map(|p| p + 2)
            .ok_or_else(|| io::Error::other("session ID not found in the attacker's session"))?;
        Ok(Forger {
            der,
            id_at,
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// A full TLS 1.2 handshake through `to` from `from` whose hello offers
    /// `victim_id` with only `ciphers` (OpenSSL names, `:`-separated).
    /// Returns whether the handshake completed (`New`, not resumed).
    pub async fn offer(
        &self,
        to: SocketAddr,
        from: IpAddr,
        victim_id: &[u8],
        ciphers: &str,
    ) -> io::Result<bool> {
        let mut der = self.der.clone();
        let slot = der
            .get_mut(self.id_at..self.id_at + victim_id.len())
            .ok_or_else(|| {
                io::Error::other("the victim's session ID is longer than the attacker's")
            })?;
        slot.copy_from_slice(victim_id);
        let der_path = self.dir.join("forged.der");
        let pem = self.dir.join("forged.pem");
        std::fs::write(&der_path, der)?;
        let mut c = Command::new("openssl");
        c.args(["sess_id", "-inform", "DER", "-in"])
            .arg(&der_path)
            .arg("-out")
            .arg(&pem);
        run(c, b"").await?;
        let mut c = s_client(to, from, &self.ca);
        c.arg("-sess_in").arg(&pem).args(["-cipher", ciphers]);
        let report = SClientReport::parse(&run(c, WHOAMI_REQUEST).await?);
        Ok(!report.protocol.is_empty() && !report.reused)
    }
}
