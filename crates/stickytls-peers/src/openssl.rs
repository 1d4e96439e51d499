//! `openssl s_server` and `s_client` as test peers, so the router is tested
//! against a second, independent TLS implementation.
//!
//! How a test tells which backend it reached: every [`SServer`] runs with
//! `-WWW` in its own directory holding a file `whoami` that contains
//! `backend=<name>`, and [`SClient`] requests `GET /whoami`. The answer
//! comes from the server process itself, after the handshake. (Each server's
//! certificate CN is also its name, reported as [`SClientReport::cert_cn`],
//! but on a resumed handshake that is the stored session's certificate, so
//! the `whoami` answer is what to assert on.) The same request gets the same
//! kind of answer from a rustls [`super::backend`].
//!
//! Every subprocess is killed on drop and every wait is bounded, so a wedged
//! router fails a test instead of hanging it. Facts this relies on: with
//! tickets, the Session-ID that `s_client` prints is SHA-256 of the ticket,
//! never seen on the wire, so session-ID assertions need `-no_ticket`; TLS
//! 1.3 tickets arrive after the handshake, so the client reads the response
//! before its session is saved; renegotiation needs TLS 1.2 on both sides
//! and `-client_renegotiation` on the server.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::Versions;
use super::cert::{PemFiles, TempDir, TestCa};

/// What [`SClient`] sends once connected. The blank line ends the request;
/// `-WWW` answers and closes.
pub const WHOAMI_REQUEST: &[u8] = b"GET /whoami HTTP/1.0\r\n\r\n";

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How an [`SServer`] is set up.
#[derive(Debug, Clone)]
pub struct SServerOptions {
    /// Served as `backend=<name>` from `/whoami`, and the certificate CN.
    pub name: String,
    /// Versions the server accepts.
    pub versions: Versions,
    /// Issue tickets; off adds `-no_ticket`, leaving session-ID resumption
    /// through s_server's built-in cache.
    pub tickets: bool,
    /// Allow the client to renegotiate (`-client_renegotiation`).
    pub client_renegotiation: bool,
    /// `-alpn` protocol list, comma-separated.
    pub alpn: Option<String>,
    /// Anything else, passed through as is.
    pub extra_args: Vec<String>,
}

impl SServerOptions {
    /// Both versions, tickets on, no renegotiation.
    pub fn new(name: impl Into<String>) -> Self {
        SServerOptions {
            name: name.into(),
            versions: Versions::Both,
            tickets: true,
            client_renegotiation: false,
            alpn: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running `openssl s_server`, killed on drop.
#[derive(Debug)]
pub struct SServer {
    /// Its name, as served from `/whoami`.
    name: String,
    /// Where it listens.
    addr: SocketAddr,
    /// The process.
    child: Child,
    /// Certificate, key and `whoami`; also the server's working directory.
    files: PemFiles,
    /// Everything it has printed, for diagnosing a failed test.
    output: Arc<Mutex<String>>,
}

impl SServer {
    /// Starts the server on a free port of 127.0.0.1 and waits until it
    /// listens.
    pub async fn start(options: SServerOptions) -> io::Result<SServer> {
        let ca = TestCa::shared();
        let files = ca.write_pem(&ca.leaf(&options.name))?;
        std::fs::write(
            files.dir().join("whoami"),
            format!("backend={}\n", options.name),
        )?;
        let mut command = Command::new("openssl");
        command
            .arg("s_server")
            // Port 0: s_server prints the port it got, so there is no race
            // for a "free" port.
            .args(["-accept", "127.0.0.1:0", "-WWW"])
            .arg("-cert")
            .arg(&files.cert)
            .arg("-key")
            .arg(&files.key)
            .arg("-cert_chain")
            .arg(&files.ca);
        command.args(options.versions.openssl_flag());
        if !options.tickets {
            command.arg("-no_ticket");
        }
        if options.client_renegotiation {
            command.arg("-client_renegotiation");
        }
        if let Some(alpn) = &options.alpn {
            command.args(["-alpn", alpn]);
        }
        command.args(&options.extra_args);
        command
            .current_dir(files.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(drain(stderr, output.clone()));
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let addr = tokio::time::timeout(START_TIMEOUT, wait_for_accept(stdout, output.clone()))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "s_server did not start: {}",
                        output.lock().unwrap().as_str()
                    ),
                )
            })??;
        Ok(SServer {
            name: options.name,
            addr,
            child,
            files,
            output,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the server has printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The PEM files it serves (the CA in them is what clients trust).
    pub fn files(&self) -> &PemFiles {
        &self.files
    }

    /// Kills the process and waits for it, so its port is closed on return.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.child.kill().await
    }
}

/// Reads s_server's stdout until its `ACCEPT 127.0.0.1:<port>` line, then
/// keeps draining it in the background so the pipe never fills.
async fn wait_for_accept(
    stdout: ChildStdout,
    output: Arc<Mutex<String>>,
) -> io::Result<SocketAddr> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        output.lock().unwrap().push_str(&line);
        output.lock().unwrap().push('\n');
        if let Some(addr) = line.strip_prefix("ACCEPT ") {
            let addr = addr
                .trim()
                .parse()
                .map_err(|_| io::Error::other(format!("unexpected ACCEPT line {line:?}")))?;
            tokio::spawn(drain(lines.into_inner(), output));
            return Ok(addr);
        }
    }
    Err(io::Error::other(format!(
        "s_server exited before listening: {}",
        output.lock().unwrap().as_str()
    )))
}

async fn drain(mut from: impl AsyncRead + Unpin, into: Arc<Mutex<String>>) {
    let mut buf = [0; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };
        into.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(bytes));
    }
}

/// How an [`SClient`] connects.
#[derive(Debug, Clone)]
pub struct SClientOptions {
    /// Versions offered.
    pub versions: Versions,
    /// `-no_ticket`: resume by session ID only, so the printed Session-ID
    /// is the one on the wire.
    pub no_ticket: bool,
    /// `-servername`; `None` sends `-noservername`.
    pub servername: Option<String>,
    /// `-alpn` protocol list, comma-separated.
    pub alpn: Option<String>,
    /// `-max_send_frag`: with a long ALPN list, splits the ClientHello over
    /// several records.
    pub max_send_frag: Option<usize>,
    /// Anything else, passed through as is.
    pub extra_args: Vec<String>,
    /// Bound on one whole run of s_client.
    pub timeout: Duration,
}

impl Default for SClientOptions {
    /// Both versions, tickets, SNI `localhost`, 10 s timeout.
    fn default() -> Self {
        SClientOptions {
            versions: Versions::Both,
            no_ticket: false,
            servername: Some("localhost".to_string()),
            alpn: None,
            max_send_frag: None,
            extra_args: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What one s_client run printed, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SClientReport {
    /// From the server's `backend=<name>` answer.
    pub backend: Option<String>,
    /// `Reused, ...` rather than `New, ...`.
    pub reused: bool,
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: String,
    /// The handshake's Session-ID in upper-case hex (the first one printed,
    /// before any TLS 1.3 ticket), `None` if empty.
    pub session_id: Option<String>,
    /// The CN of the server certificate s_client printed.
    pub cert_cn: Option<String>,
    /// Everything printed, for diagnosing a failed test.
    pub transcript: String,
}

impl SClientReport {
    /// Parses s_client's stdout (OpenSSL 3.0 format).
    pub fn parse(transcript: &str) -> SClientReport {
        let mut report = SClientReport {
            backend: None,
            reused: false,
            protocol: String::new(),
            session_id: None,
            cert_cn: None,
            transcript: transcript.to_string(),
        };
        let (mut saw_status, mut saw_session) = (false, false);
        for line in transcript.lines() {
            if let Some(name) = line.strip_prefix("backend=") {
                let name = name.split_whitespace().next().unwrap_or_default();
                report.backend.get_or_insert_with(|| name.to_string());
            } else if let Some(cn) = line.strip_prefix("subject=CN = ") {
                report.cert_cn.get_or_insert_with(|| cn.trim().to_string());
            } else if !saw_status && (line.starts_with("New, ") || line.starts_with("Reused, ")) {
                saw_status = true;
                report.reused = line.starts_with("Reused, ");
                report.protocol = line.split(", ").nth(1).unwrap_or_default().to_string();
            } else if let Some(id) = line.trim_start().strip_prefix("Session-ID:") {
                if !saw_session {
                    saw_session = true;
                    let id = id.trim();
                    report.session_id = (!id.is_empty()).then(|| id.to_string());
                }
            }
        }
        report
    }
}

/// An `openssl s_client` with a session file: each [`connect`] offers the
/// session saved by the previous one, like a browser would.
///
/// [`connect`]: SClient::connect
#[derive(Debug)]
pub struct SClient {
    /// How to run s_client.
    options: SClientOptions,
    /// Holds the CA file and the session file.
    dir: TempDir,
    /// The CA to verify against.
    ca: PathBuf,
    /// `-sess_out` of every run, `-sess_in` once it exists.
    session: PathBuf,
}

impl SClient {
    /// A client with no saved session yet.
    pub fn new(options: SClientOptions) -> io::Result<SClient> {
        let dir = TempDir::new("sclient")?;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TestCa::shared().cert_pem())?;
        let session = dir.path().join("session.pem");
        Ok(SClient {
            options,
            dir,
            ca,
            session,
        })
    }

    /// Forgets the saved session: the next connect is a full handshake.
    pub fn forget(&mut self) {
        let _ = std::fs::remove_file(&self.session);
    }

    /// Whether a session is saved to offer next time.
    pub fn has_session(&self) -> bool {
        self.session.exists()
    }

    /// The s_client command line for `addr`, without stdin handling.
    fn command(&self, o: &SClientOptions, addr: SocketAddr, source: Option<IpAddr>) -> Command {
        let mut command = Command::new("openssl");
        command
            .arg("s_client")
            .args(["-connect", &addr.to_string()])
            .arg("-CAfile")
            .arg(&self.ca)
            .arg("-sess_out")
            .arg(&self.session);
        if self.has_session() {
            command.arg("-sess_in").arg(&self.session);
        }
        if let Some(ip) = source {
            command.args(["-bind", &SocketAddr::new(ip, 0).to_string()]);
        }
        match &o.servername {
            Some(name) => command.args(["-servername", name]),
            None => command.arg("-noservername"),
        };
        command.args(o.versions.openssl_flag());
        if o.no_ticket {
            command.arg("-no_ticket");
        }
        if let Some(alpn) = &o.alpn {
            command.args(["-alpn", alpn]);
        }
        if let Some(frag) = o.max_send_frag {
            command.args(["-max_send_frag", &frag.to_string()]);
        }
        command.args(&o.extra_args);
        command
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Connects (from `source` if given), requests `/whoami`, reads the
    /// answer until the server closes, and saves the session for next time.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> io::Result<SClientReport> {
        let mut command = self.command(&self.options, addr, source);
        // -ign_eof: keep reading after our stdin ends, until the server
        // closes, so the answer and any TLS 1.3 tickets are read.
        command.arg("-ign_eof");
        let mut child = command.spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        stdin.write_all(WHOAMI_REQUEST).await?;
        drop(stdin);
        let output = tokio::time::timeout(self.options.timeout, child.wait_with_output())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "s_client timed out"))??;
        let report = SClientReport::parse(&String::from_utf8_lossy(&output.stdout));
        if report.protocol.is_empty() {
            return Err(io::Error::other(format!(
                "s_client did not complete a handshake: {}{}",
                report.transcript,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(report)
    }

    /// Connects over TLS 1.2 without tickets, renegotiates (`R` on
    /// s_client's stdin), then requests `/whoami` on the renegotiated
    /// session. Needs an [`SServer`] with `client_renegotiation`.
    pub async fn renegotiate(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> io::Result<Renegotiation> {
        let options = SClientOptions {
            versions: Versions::Tls12,
            no_ticket: true,
            ..self.options.clone()
        };
        let mut command = self.command(&options, addr, source);
        // -msg dumps every handshake message, which is the only place the
        // renegotiated ServerHello's session ID is printed. No -ign_eof:
        // it would disable s_client's `R` command.
        command.arg("-msg");
        let mut child = command.spawn()?;
        let errors = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(drain(stderr, errors.clone()));
        }
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let transcript = Arc::new(Mutex::new(String::new()));
        let driven = tokio::time::timeout(
            self.options.timeout,
            drive_renegotiation(stdin, stdout, transcript.clone()),
        )
        .await;
        let _ = child.kill().await;
        let transcript = format!(
            "{}{}",
            transcript.lock().unwrap().as_str(),
            errors.lock().unwrap().as_str()
        );
        match driven {
            Ok(Ok(mut reneg)) => {
                reneg.transcript = transcript;
                Ok(reneg)
            }
            Ok(Err(e)) => Err(io::Error::new(e.kind(), format!("{e}: {transcript}"))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("renegotiation timed out: {transcript}"),
            )),
        }
    }
}

/// What a renegotiation run saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renegotiation {
    /// Session ID (upper-case hex) in the first ServerHello.
    pub before: String,
    /// Session ID in the renegotiation's ServerHello.
    pub after: String,
    /// The `backend=<name>` answer, read after renegotiating.
    pub backend: Option<String>,
    /// Everything s_client printed.
    pub transcript: String,
}

/// Feeds s_client's stdin as its stdout shows progress: `R` once the first
/// handshake is reported, the request once the server has finished the
/// renegotiation, then reads to the answer.
async fn drive_renegotiation(
    mut stdin: tokio::process::ChildStdin,
    stdout: ChildStdout,
    transcript: Arc<Mutex<String>>,
) -> io::Result<Renegotiation> {
    let mut lines = BufReader::new(stdout).lines();
    let mut hellos: Vec<Vec<u8>> = Vec::new();
    // Some(bytes) while collecting a ServerHello's hex dump.
    let mut collecting: Option<Vec<u8>> = None;
    let (mut in_session, mut sent_r, mut sent_request) = (false, false, false);
    let mut backend = None;
    while let Some(line) = lines.next_line().await? {
        {
            let mut t = transcript.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
        if let Some(bytes) = collecting.as_mut() {
            match parse_hex_line(&line) {
                Some(more) => {
                    bytes.extend(more);
                    continue;
                }
                None => hellos.extend(collecting.take()),
            }
        }
        if line.starts_with("<<< ") && line.ends_with(", ServerHello") {
            collecting = Some(Vec::new());
        } else if line == "SSL-Session:" {
            in_session = true;
        } else if line == "---" && in_session && !sent_r {
            stdin.write_all(b"R\n").await?;
            sent_r = true;
        } else if line.starts_with("<<< ") && line.ends_with(", Finished") && hellos.len() >= 2 {
            if !sent_request {
                stdin.write_all(WHOAMI_REQUEST).await?;
                sent_request = true;
            }
        } else if let Some(name) = line.strip_prefix("backend=") {
            backend = Some(name.trim().to_string());
            break;
        }
    }
    let ids: Vec<String> = hellos
        .iter()
        .filter_map(|h| server_hello_session_id(h))
        .collect();
    match ids.as_slice() {
        [before, after, ..] => Ok(Renegotiation {
            before: before.clone(),
            after: after.clone(),
            backend,
            transcript: String::new(),
        }),
        _ => Err(io::Error::other("did not see two ServerHellos")),
    }
}

/// `    02 00 00 4d 03 03 ...` → bytes; `None` for any other line.
fn parse_hex_line(line: &str) -> Option<Vec<u8>> {
    let rest = line.strip_prefix("    ")?;
    rest.split_whitespace()
        .map(|pair| {
            let mut byte = [0u8];
            hex::decode_to_slice(pair, &mut byte).ok()?;
            let [b] = byte;
            Some(b)
        })
        .collect()
}

/// The legacy_session_id of a ServerHello handshake message (with its
/// 4-byte header), in upper-case hex.
///
/// ```text
/// struct {
///     ProtocolVersion legacy_version;        // 2
///     Random random;                         // 32
///     opaque legacy_session_id_echo<0..32>;
///     ...
/// } ServerHello;
/// ```
fn server_hello_session_id(message: &[u8]) -> Option<String> {
    let rest = message.get(4 + 2 + 32..)?;
    let (&len, rest) = rest.split_first()?;
    let id = rest.get(..usize::from(len))?;
    Some(hex::encode_upper(id))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::backend::{Backend, BackendOptions};
    use crate::tap::Tap;

    // No tokio::time::pause() here: these peers are subprocesses, and a
    // paused clock would fire every timeout at once.

    fn tls12_no_ticket() -> SClientOptions {
        SClientOptions {
            versions: Versions::Tls12,
            no_ticket: true,
            ..SClientOptions::default()
        }
    }

    #[tokio::test]
    async fn s_client_without_tickets_resumes_the_same_session_id() {
        let server = SServer::start(SServerOptions {
            tickets: false,
            ..SServerOptions::new("a")
        })
        .await
        .unwrap();
        let client = SClient::new(tls12_no_ticket()).unwrap();
        let first = client.connect(server.addr(), None).await.unwrap();
        assert_eq!(first.backend.as_deref(), Some("a"), "{}", first.transcript);
        assert_eq!(first.cert_cn.as_deref(), Some("a"));
        assert!(!first.reused);
        assert_eq!(first.protocol, "TLSv1.2");
        let id = first.session_id.clone().expect("a session ID");
        assert_eq!(id.len(), 64);

        let second = client.connect(server.addr(), None).await.unwrap();
        assert!(second.reused, "{}", second.transcript);
        assert_eq!(second.session_id, Some(id));
        assert_eq!(second.backend.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn s_client_tls13_resumes_with_the_saved_ticket() {
        let server = SServer::start(SServerOptions::new("a")).await.unwrap();
        let mut client = SClient::new(SClientOptions {
            versions: Versions::Tls13,
            ..SClientOptions::default()
        })
        .unwrap();
        let first = client.connect(server.addr(), None).await.unwrap();
        assert_eq!(first.protocol, "TLSv1.3");
        assert!(!first.reused);
        assert!(client.has_session());
        let second = client.connect(server.addr(), None).await.unwrap();
        assert!(second.reused, "{}", second.transcript);
        client.forget();
        let third = client.connect(server.addr(), None).await.unwrap();
        assert!(!third.reused);
    }

    #[tokio::test]
    async fn s_client_source_binding_is_seen_by_a_rustls_backend() {
        let backend = Backend::start(BackendOptions::new("rustls-a"))
            .await
            .unwrap();
        let client = SClient::new(SClientOptions::default()).unwrap();
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let report = client.connect(backend.addr(), Some(source)).await.unwrap();
        assert_eq!(report.backend.as_deref(), Some("rustls-a"));
        assert_eq!(backend.peer_ips(), vec![source]);
    }

    #[tokio::test]
    async fn renegotiation_gets_a_new_session_id_from_the_same_server() {
        let server = SServer::start(SServerOptions {
            versions: Versions::Tls12,
            tickets: false,
            client_renegotiation: true,
            ..SServerOptions::new("a")
        })
        .await
        .unwrap();
        let client = SClient::new(tls12_no_ticket()).unwrap();
        let reneg = client.renegotiate(server.addr(), None).await.unwrap();
        assert_eq!(reneg.backend.as_deref(), Some("a"), "{}", reneg.transcript);
        assert_eq!(reneg.before.len(), 64);
        assert_eq!(reneg.after.len(), 64);
        assert_ne!(reneg.before, reneg.after);
    }

    #[tokio::test]
    async fn max_send_frag_with_long_alpn_splits_the_client_hello_over_records() {
        let server = SServer::start(SServerOptions::new("a")).await.unwrap();
        let tap = Tap::start(server.addr()).await.unwrap();
        let long: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(100))).collect();
        let client = SClient::new(SClientOptions {
            alpn: Some(long.join(",")),
            max_send_frag: Some(512),
            ..SClientOptions::default()
        })
        .unwrap();
        let report = client.connect(tap.addr(), None).await.unwrap();
        assert_eq!(
            report.backend.as_deref(),
            Some("a"),
            "{}",
            report.transcript
        );

        let capture = tap
            .wait_closed(1, Duration::from_secs(5))
            .await
            .unwrap()
            .remove(0);
        let first_record_len = usize::from(capture.client[3]) << 8 | usize::from(capture.client[4]);
        let hello_len = (usize::from(capture.client[6]) << 16)
            | (usize::from(capture.client[7]) << 8)
            | usize::from(capture.client[8]);
        assert!(first_record_len <= 512, "{first_record_len}");
        assert!(hello_len + 4 > first_record_len, "{hello_len}");
    }

    #[test]
    fn report_parses_a_resumed_tls12_transcript() {
        let report = SClientReport::parse(
            "CONNECTED(00000003)\n---\nReused, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384\n\
             SSL-Session:\n    Protocol  : TLSv1.2\n    Session-ID: 0EE6C4D8\n    Session-ID-ctx: \n\
             ---\nHTTP/1.0 200 ok\r\n\r\nbackend=a\nclosed\n",
        );
        assert!(report.reused);
        assert_eq!(report.protocol, "TLSv1.2");
        assert_eq!(report.session_id.as_deref(), Some("0EE6C4D8"));
        assert_eq!(report.backend.as_deref(), Some("a"));
    }

    #[test]
    fn server_hello_session_id_reads_the_echoed_id() {
        let mut hello = vec![2, 0, 0, 70, 3, 3];
        hello.extend([0x11; 32]);
        hello.push(2);
        hello.extend([0xab, 0x01, 0x13, 0x01, 0x00]);
        assert_eq!(server_hello_session_id(&hello).as_deref(), Some("AB01"));
        assert_eq!(server_hello_session_id(&hello[..39]), None);
    }
}
