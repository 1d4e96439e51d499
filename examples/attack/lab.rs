//! The lab an attack runs in: client addresses chosen by the router's
//! `source-hash`, the router under test as a subprocess with its own
//! configuration, its admin API and RSS, and the backends that are not
//! in-process (nginx fronts, Java's JSSE). Everything listens and connects
//! on 127.0.0.0/8; every process is killed when its handle drops, and the
//! script kills the whole process group on exit besides.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Client addresses of one attack, 127.SPACE.x.y, handed out in order.
#[derive(Debug)]
pub struct Addresses {
    /// The second octet: one per attack, so logs tell them apart.
    space: u8,
    /// The next one to hand out.
    next: u32,
    /// The pool's backend names, all of weight 1, in any order.
    backends: Vec<String>,
}

impl Addresses {
    pub fn new(space: u8, backends: &[&str]) -> Addresses {
        Addresses {
            space,
            next: 0,
            backends: backends.iter().map(|b| b.to_string()).collect(),
        }
    }

    /// A fresh address.
    pub fn any(&mut self) -> IpAddr {
        let n = self.next;
        self.next += 1;
        // 250 per /24, never .0 or .255.
        let [_, _, hi, lo] = (n / 250).to_be_bytes();
        assert!(hi == 0, "out of addresses in 127.{}.0.0/16", self.space);
        IpAddr::V4(Ipv4Addr::new(127, self.space, lo, (n % 250) as u8 + 1))
    }

    /// A fresh address whose `source-hash` choice is `backend`.
    pub fn placed_on(&mut self, backend: &str) -> IpAddr {
        loop {
            let a = self.any();
            if self.balanced_to(a) == backend {
                return a;
            }
        }
    }

    /// A fresh address whose `source-hash` choice is not `backend`: where
    /// a resumption the router cannot place lands elsewhere.
    pub fn away_from(&mut self, backend: &str) -> IpAddr {
        loop {
            let a = self.any();
            if self.balanced_to(a) != backend {
                return a;
            }
        }
    }

    /// The backend `source-hash` picks for `addr` (docs/routing.md).
    pub fn balanced_to(&self, addr: IpAddr) -> &str {
        let IpAddr::V4(v4) = addr else {
            unreachable!("IPv4 only")
        };
        let mut client = [0u8; 17];
        client[0] = 4;
        client[13..].copy_from_slice(&v4.octets());
        self.backends
            .iter()
            .map(|b| (stickytls::balance::rendezvous_score(&client, b, 1), b))
            .max_by(|x, y| x.0.total_cmp(&y.0).then_with(|| y.1.cmp(x.1)))
            .map(|(_, b)| b.as_str())
            .unwrap_or_default()
    }
}

/// Polls until something accepts on `addr`, for at most `bound`.
pub async fn wait_listening(addr: SocketAddr, bound: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > bound {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing listens on {addr}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The router under test, started from a configuration file.
#[derive(Debug)]
pub struct Router {
    /// The process; killed on drop.
    child: Child,
    /// Its listener.
    pub listen: SocketAddr,
    /// Its admin endpoint.
    pub admin: SocketAddr,
}

impl Router {
    /// Writes `config` (TOML, which must bind `listen` and `admin`) to
    /// `work/NAME.toml` and runs `binary run --config` on it.
    pub async fn start(
        binary: &Path,
        work: &Path,
        name: &str,
        config: &str,
        listen: SocketAddr,
        admin: SocketAddr,
    ) -> io::Result<Router> {
        let file = work.join(format!("{name}.toml"));
        std::fs::write(&file, config)?;
        let log = work.join(format!("{name}.router.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let router = Router {
            child,
            listen,
            admin,
        };
        let started = async {
            wait_listening(listen, Duration::from_secs(15)).await?;
            wait_listening(admin, Duration::from_secs(15)).await
        };
        started.await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the router did not start ({e}); its log: {}", log.display()),
            )
        })?;
        Ok(router)
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Its resident set in KiB, from /proc.
    pub fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }

    /// `GET path` on the admin endpoint, parsed as JSON.
    pub async fn api(&self, path: &str) -> io::Result<serde_json::Value> {
        let mut s = TcpStream::connect(self.admin).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "admin API"))??;
        let text = String::from_utf8_lossy(&raw);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).map_err(|e| io::Error::other(format!("{path}: {e}: {body}")))
    }

    /// Each backend of pool `default` and its state (`up`, `down`, ...).
    pub async fn backend_states(&self) -> io::Result<Vec<(String, String)>> {
        let v = self.api("/api/v1/pools/default/backends").await?;
        Ok(v["backends"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .map(|b| {
                        (
                            b["name"].as_str().unwrap_or("?").to_string(),
                            b["state"].as_str().unwrap_or("?").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Entries in pool `default`'s affinity table.
    pub async fn table_entries(&self) -> io::Result<u64> {
        let v = self.api("/api/v1/pools").await?;
        v["pools"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "default"))
            .and_then(|p| p["affinity_entries"].as_u64())
            .ok_or_else(|| io::Error::other("no affinity_entries for pool default"))
    }
}

/// A router configuration: one listener, pool `default` with `backends`
/// balanced by `source-hash` (so a test knows where an address lands), the
/// admin endpoint, and the extra lines each attack needs (under the
/// listener, the pool, the pool's affinity and timeouts).
#[derive(Debug, Default)]
pub struct Config<'a> {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub backends: Vec<(String, SocketAddr)>,
    pub listener: &'a str,
    pub affinity: &'a str,
    pub timeouts: &'a str,
    /// `[pool.default.health] check`; `none` unless an attack needs probes.
    pub health: &'a str,
}

impl Config<'_> {
    pub fn toml(&self) -> String {
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|(n, a)| format!("  {{ name = \"{n}\", address = \"{a}\" }},"))
            .collect();
        format!(
            "[[listener]]\nbind = \"{listen}\"\ndefault_pool = \"default\"\n{listener}\n\n\
             [pool.default]\nbalance = \"source-hash\"\nbackends = [\n{backends}\n]\n\n\
             [pool.default.affinity]\n{affinity}\n\n\
             [pool.default.timeouts]\n{timeouts}\n\n\
             [pool.default.health]\ncheck = \"{health}\"\n\n\
             [admin]\nbind = \"{admin}\"\n",
            listen = self.listen.expect("a listener"),
            admin = self.admin.expect("an admin address"),
            listener = self.listener,
            backends = backends.join("\n"),
            affinity = self.affinity,
            timeouts = self.timeouts,
            health = if self.health.is_empty() {
                "none"
            } else {
                self.health
            },
        )
    }
}

/// The nginx stream module's path, for `load_module` (none when built in).
fn stream_module() -> Option<&'static str> {
    [
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "/usr/lib64/nginx/modules/ngx_stream_module.so",
    ]
    .into_iter()
    .find(|m| Path::new(m).exists())
}

/// nginx stream servers, one in front of each backend: a WAF-like peer
/// that closes a connection whose hello names `blocked_sni` (it proxies it
/// to a closed port) and passes every other one to its backend.
#[derive(Debug)]
pub struct NginxFronts {
    child: Child,
    /// Where each front listens, in the order of the backends given.
    pub fronts: Vec<SocketAddr>,
}

impl NginxFronts {
    pub async fn start(
        work: &Path,
        blocked_sni: &str,
        closed: SocketAddr,
        backends: &[(SocketAddr, SocketAddr)],
    ) -> io::Result<NginxFronts> {
        let dir = work.join("nginx-fronts");
        std::fs::create_dir_all(&dir)?;
        let mut conf = String::new();
        if let Some(m) = stream_module() {
            conf.push_str(&format!("load_module {m};\n"));
        }
        conf.push_str(&format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\nstream {{\n",
            d = dir.display()
        ));
        for (i, (front, backend)) in backends.iter().enumerate() {
            conf.push_str(&format!(
                "  map $ssl_preread_server_name $up{i} {{ {blocked_sni} {closed}; default {backend}; }}\n\
                 \x20 server {{ listen {front}; ssl_preread on; proxy_connect_timeout 2s; proxy_pass $up{i}; }}\n"
            ));
        }
        conf.push_str("}\n");
        let file = dir.join("nginx.conf");
        std::fs::write(&file, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not killed on drop: SIGKILL would leave the worker serving.
            .spawn()?;
        let fronts: Vec<SocketAddr> = backends.iter().map(|(f, _)| *f).collect();
        for f in &fronts {
            wait_listening(*f, Duration::from_secs(10)).await?;
        }
        Ok(NginxFronts { child, fronts })
    }

    /// Stops nginx and waits for its master, which stops its worker first.
    pub async fn stop(mut self) {
        self.terminate();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// SIGTERM to the master: a fast shutdown that takes the worker with
    /// it (SIGKILL would leave the worker listening).
    fn terminate(&self) {
        let pid = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

impl Drop for NginxFronts {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A TLS server on Java's JSSE (`SSLServerSocket`), one listener per
/// backend name, each with its own `SSLContext` and so its own session
/// cache; answers `GET /whoami` with `backend=NAME` like the other peers.
/// Session tickets are off, so TLS 1.2 resumes by session ID, which is the
/// case where JSSE answers a hello without the session's cipher suite with
/// a full handshake and keeps the session.
const JAVA_SERVER: &str = r#"
import java.io.*;
import java.net.*;
import java.nio.file.*;
import java.security.*;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.*;
import java.util.Base64;
import javax.net.ssl.*;

public class WhoamiServer {
    public static void main(String[] args) throws Exception {
        // args: NAME PORT CERT.pem KEY.pem, repeated
        for (int i = 0; i + 3 < args.length; i += 4) {
            String name = args[i];
            int port = Integer.parseInt(args[i + 1]);
            SSLContext ctx = context(args[i + 2], args[i + 3]);
            SSLServerSocket server = (SSLServerSocket) ctx.getServerSocketFactory()
                .createServerSocket(port, 128, InetAddress.getByName("127.0.0.1"));
            server.setEnabledProtocols(new String[] {"TLSv1.2"});
            Thread t = new Thread(() -> serve(server, name));
            t.setDaemon(false);
            t.start();
        }
        System.out.println("READY");
        System.out.flush();
    }

    static SSLContext context(String certFile, String keyFile) throws Exception {
        Certificate cert = CertificateFactory.getInstance("X.509")
            .generateCertificate(new FileInputStream(certFile));
        String pem = new String(Files.readAllBytes(Paths.get(keyFile)));
        String b64 = pem.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        PrivateKey key = KeyFactory.getInstance("EC")
            .generatePrivate(new PKCS8EncodedKeySpec(Base64.getDecoder().decode(b64)));
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(null, null);
        char[] pw = "x".toCharArray();
        ks.setKeyEntry("k", key, pw, new Certificate[] {cert});
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
        kmf.init(ks, pw);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), null, null);
        return ctx;
    }

    static void serve(SSLServerSocket server, String name) {
        while (true) {
            try {
                Socket s = server.accept();
                new Thread(() -> answer(s, name)).start();
            } catch (IOException e) {
                return;
            }
        }
    }

    static void answer(Socket s, String name) {
        try (s) {
            s.setSoTimeout(10000);
            BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream()));
            String line;
            while ((line = in.readLine()) != null && !line.isEmpty()) { }
            OutputStream out = s.getOutputStream();
            out.write(("HTTP/1.0 200 ok\r\n\r\nbackend=" + name + "\n").getBytes());
            out.flush();
        } catch (IOException e) {
            // a client that left, or a hello that was never finished
        }
    }
}
"#;

/// The running Java server.
#[derive(Debug)]
pub struct JavaServers {
    child: Child,
}

impl JavaServers {
    /// Starts one JVM serving each `(name, port, cert, key)`; waits for it
    /// to listen (compiling the source takes a few seconds).
    pub async fn start(
        work: &Path,
        servers: &[(String, u16, PathBuf, PathBuf)],
    ) -> io::Result<JavaServers> {
        let source = work.join("WhoamiServer.java");
        std::fs::write(&source, JAVA_SERVER)?;
        let mut command = Command::new("java");
        command
            .arg("-Djdk.tls.server.enableSessionTicketExtension=false")
            .arg("-Xmx128m")
            .arg(&source);
        for (name, port, cert, key) in servers {
            command.arg(name).arg(port.to_string()).arg(cert).arg(key);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if line.trim() == "READY" {
                    return Ok(());
                }
            }
            Err(io::Error::other("the Java server exited before listening"))
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the Java server did not start"))?;
        ready?;
        // Keep draining stdout so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        for (_, port, _, _) in servers {
            wait_listening(
                SocketAddr::from(([127, 0, 0, 1], *port)),
                Duration::from_secs(10),
            )
            .await?;
        }
        Ok(JavaServers { child })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
