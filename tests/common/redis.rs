//! Real Redis for the shared-store tests: one `redis-server`, or a
//! three-master Redis Cluster, on 127.0.0.1 on free ports, each started by
//! its test and killed on drop. [`SharedStore`] lets one test body run
//! against either.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stickytls::config::StoreConfig;

/// What a shared-store test needs from the store it runs against.
pub trait SharedStore {
    /// A `[store]` for routers sharing through it, other settings at
    /// their defaults.
    fn config(&self) -> StoreConfig;
    /// What the store's status calls its kind.
    fn kind(&self) -> &'static str;
    /// Every server gone at once.
    fn kill(&mut self);
    /// Back on the same ports (and for a cluster, the same node files),
    /// answering (10 s at most).
    fn restart(&mut self);
    /// The keys matching `pattern`, on every server.
    fn keys(&self, pattern: &str) -> Vec<String>;
    /// One command about `key`, on the server that holds it; its raw reply.
    fn command_for_key(&self, key: &str, args: &[&str]) -> String;
    /// The plain-text ports of every server, for commands sent to each.
    fn ports(&self) -> Vec<u16>;
    /// How many servers hold a key matching `pattern`.
    fn holders(&self, pattern: &str) -> usize {
        self.ports()
            .into_iter()
            .filter(|&p| !elements(&command(p, &["KEYS", pattern]).unwrap()).is_empty())
            .count()
    }
}

/// A free port `p` with `p + 10000` free too (a cluster node's bus).
pub fn free_port() -> u16 {
    loop {
        // Bound, then released for the server to take.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// One command in RESP on `port`, its raw reply (enough for PING, SET,
/// KEYS, CLUSTER INFO).
pub fn command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The elements of an array reply of bulk strings.
fn elements(reply: &str) -> Vec<String> {
    reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_string)
        .collect()
}

/// A `redis-server` of this test's own on a free port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    /// Arguments after the common ones (cluster mode, TLS).
    extra: Vec<String>,
    /// `rediss://` on this port, when the server also speaks TLS.
    pub tls_port: Option<u16>,
    /// The CA the TLS port's certificate chains to, for the routers.
    ca_file: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(free_port(), Vec::new(), None)
    }

    /// On `port`, with `extra` arguments; `tls_port` when `extra` makes
    /// the server listen for TLS there.
    pub fn start_with(port: u16, extra: Vec<String>, tls_port: Option<u16>) -> RedisServer {
        let mut r = RedisServer {
            port,
            extra,
            tls_port,
            ca_file: None,
            child: None,
        };
        r.restart();
        r
    }

    /// A server that also speaks TLS on a port of its own, with the leaf
    /// and CA of `pem` and no client certificates asked for; the plain
    /// port stays for the test's own commands.
    pub fn start_tls(pem: &stickytls_peers::cert::PemFiles) -> RedisServer {
        let tls_port = free_port();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
        let extra = vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(&pem.cert),
            "--tls-key-file".into(),
            path(&pem.key),
            "--tls-ca-cert-file".into(),
            path(&pem.ca),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let mut r = RedisServer::start_with(free_port(), extra, Some(tls_port));
        r.ca_file = Some(pem.ca.clone());
        r
    }

    /// Starts the server (again) on the same port, and waits until it
    /// answers a PING (10 s at most).
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .command(&["PING"])
                .is_ok_and(|r| r.starts_with("+PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer", self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        match self.tls_port {
            Some(p) => format!("rediss://127.0.0.1:{p}/0"),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        command(self.port, args)
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        elements(&self.command(&["KEYS", pattern]).unwrap())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl SharedStore for RedisServer {
    fn config(&self) -> StoreConfig {
        let mut c = StoreConfig::redis(&self.url());
        c.tls_ca_file = self.ca_file.clone();
        c
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn kill(&mut self) {
        RedisServer::kill(self);
    }

    fn restart(&mut self) {
        RedisServer::restart(self);
    }

    fn keys(&self, pattern: &str) -> Vec<String> {
        RedisServer::keys(self, pattern)
    }

    fn command_for_key(&self, _key: &str, args: &[&str]) -> String {
        self.command(args).unwrap()
    }

    fn ports(&self) -> Vec<u16> {
        vec![self.port]
    }
}

/// A Redis Cluster of three masters and no replicas, each node with a
/// node file and directory of its own, so that a restart on the same
/// ports finds the same cluster.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// The nodes' directories, removed on drop.
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create`,
    /// and waits until every node says `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "stickytls-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = ports
            .iter()
            .map(|&p| {
                let d = dir.join(p.to_string());
                std::fs::create_dir_all(&d).unwrap();
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--dir",
                    d.to_str().unwrap(),
                ]
                .map(String::from)
                .to_vec();
                RedisServer::start_with(p, extra, None)
            })
            .collect();
        let cluster = RedisCluster { nodes, dir };
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs (scripts/test installs it with redis-server)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.until_ok();
        cluster
    }

    /// Waits (20 s at most) until every node says `cluster_state:ok`.
    fn until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .is_ok_and(|r| r.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SharedStore for RedisCluster {
    fn config(&self) -> StoreConfig {
        StoreConfig::redis_cluster(&self.seeds())
    }

    fn kind(&self) -> &'static str {
        "redis-cluster"
    }

    fn kill(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }

    fn restart(&mut self) {
        for n in &mut self.nodes {
            n.restart();
        }
        self.until_ok();
    }

    fn keys(&self, pattern: &str) -> Vec<String> {
        self.nodes.iter().flat_map(|n| n.keys(pattern)).collect()
    }

    fn command_for_key(&self, key: &str, args: &[&str]) -> String {
        let mut last = String::new();
        for n in &self.nodes {
            last = n.command(args).unwrap();
            if !last.starts_with("-MOVED") {
                return last;
            }
        }
        panic!("no node holds {key}: {last}");
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}
