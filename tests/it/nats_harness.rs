//! A 3-node NATS JetStream cluster of the tests' own, on free loopback ports: its own
//! generated config files and store directories in a temp directory, started with Debian's
//! `nats-server` (2.9 runs JetStream with `-js`), ready once the cluster has a meta leader,
//! stopped (SIGKILL) on drop. A test may SIGKILL one node ([`Cluster::kill`]) and start it
//! again ([`Cluster::restart`]).
//!
//! Without `nats-server` on the `PATH`, [`cluster`] prints one line saying why and returns
//! `None` (the test then returns); with `REWARDPOOL_REQUIRE_NATS=1` (set by `.ci/run`) it
//! fails the test instead.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The variable that makes the NATS tests mandatory.
pub(crate) const REQUIRE: &str = "REWARDPOOL_REQUIRE_NATS";

/// Longest wait for a cluster to elect its meta leader.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Nodes in a cluster.
pub(crate) const NODES: usize = 3;

/// One node's ports and process.
struct Node {
    client_port: u16,
    cluster_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// A running 3-node JetStream cluster. Dropping it kills every node.
pub(crate) struct Cluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// The `nats-server` binary, if there is one on the `PATH`.
fn server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// Starts a cluster, or says why not: `None` (after one printed line) when `nats-server` is
/// missing and [`REQUIRE`] is not set.
///
/// # Panics
/// When `nats-server` is missing and [`REQUIRE`] is set, or when the cluster does not elect
/// a meta leader within [`READY_DEADLINE`].
pub(crate) fn cluster(test: &str) -> Option<Cluster> {
    let Some(binary) = server_binary() else {
        assert!(
            std::env::var_os(REQUIRE).is_none_or(|v| v.is_empty() || v == "0"),
            "{test}: nats-server is not installed, and {REQUIRE} makes the NATS tests mandatory \
             (apt-get install nats-server)"
        );
        println!("{test}: skipped: nats-server is not installed (apt-get install nats-server)");
        return None;
    };
    Some(Cluster::start(&binary))
}

/// `n` distinct free loopback ports: all bound at once (a port bound and released alone can
/// come back from the next bind: two nodes were once given the same one), then released.
/// Another process could take one before the server binds it, which then fails the test
/// with the server's own message.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

impl Cluster {
    fn start(binary: &Path) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(3 * NODES);
        let nodes: Vec<Node> = ports
            .chunks(3)
            .map(|p| Node { client_port: p[0], cluster_port: p[1], http_port: p[2], child: None })
            .collect();
        let mut cluster = Cluster { nodes, dir };
        for i in 0..NODES {
            cluster.write_config(i);
            cluster.spawn(binary, i);
        }
        cluster.wait_ready();
        cluster.wait_placement();
        cluster
    }

    /// Waits until the cluster can place a stream of 3 replicas (creates and deletes one):
    /// a healthy meta group may still time out the first creations for a few seconds.
    fn wait_placement(&self) {
        let addrs = self.addrs();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let start = Instant::now();
        let result = rt.block_on(async {
            let client = async_nats::connect(addrs).await.map_err(|e| e.to_string())?;
            let js = async_nats::jetstream::new(client);
            loop {
                let config = async_nats::jetstream::stream::Config {
                    name: "harness_probe".into(),
                    subjects: vec!["harness.probe".into()],
                    num_replicas: NODES,
                    ..Default::default()
                };
                match js.get_or_create_stream(config).await {
                    Ok(_) => {
                        let _ = js.delete_stream("harness_probe").await;
                        return Ok(());
                    }
                    Err(e) if start.elapsed() > READY_DEADLINE => return Err(e.to_string()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        if let Err(e) = result {
            panic!("the NATS cluster placed no stream of 3 replicas: {e}; logs:\n{}", self.logs());
        }
    }

    /// The client URLs, parsed for async-nats.
    pub(crate) fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.urls().iter().map(|u| u.parse().expect("a server URL")).collect()
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.conf"))
    }

    fn write_config(&self, i: usize) {
        let node = &self.nodes[i];
        let store = self.dir.path().join(format!("n{i}"));
        let mut routes = String::new();
        for (j, other) in self.nodes.iter().enumerate() {
            if j != i {
                let _ = write!(routes, "\n    nats-route://127.0.0.1:{}", other.cluster_port);
            }
        }
        let config = format!(
            "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
             jetstream {{\n  store_dir: {:?}\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
             cluster {{\n  name: rewardpool-test\n  listen: 127.0.0.1:{}\n  routes: [{routes}\n  ]\n}}\n",
            node.client_port,
            node.http_port,
            store.display().to_string(),
            node.cluster_port,
        );
        std::fs::write(self.config_path(i), config).expect("write a nats-server config");
    }

    fn spawn(&mut self, binary: &Path, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("n{i}.log")))
            .expect("create a nats-server log file");
        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(self.config_path(i))
            .arg("-js")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: `prctl` is async-signal-safe; between fork and exec it only asks the kernel
        // to SIGKILL the server when the thread that started it ends, so a test that panics
        // past its drop (or an aborted test run) leaves no server behind.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("start nats-server");
        self.nodes[i].child = Some(child);
    }

    /// Waits until every running node names the meta leader in `/jsz` and says it is healthy
    /// (`/healthz`: its JetStream is current with the meta group). A meta leader alone is
    /// not enough: a stream of 3 replicas created right then times out.
    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let running = || self.nodes.iter().filter(|n| n.child.is_some());
            let leaders = running()
                .all(|n| http_get(n.http_port, "/jsz").is_some_and(|b| has_meta_leader(&b)));
            let healthy = running()
                .all(|n| http_get(n.http_port, "/healthz").is_some_and(|b| b.contains("\"ok\"")));
            if leaders && healthy {
                return;
            }
            assert!(
                start.elapsed() < READY_DEADLINE,
                "the NATS cluster elected no meta leader within {READY_DEADLINE:?}; logs:\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node's log, for a failure message.
    pub(crate) fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("n{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- n{i} ---\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The client URLs of every node, comma-separated (what `replication.nats` takes, and
    /// what async-nats connects to).
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect()
    }

    /// SIGKILLs node `i` (its store directory stays).
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs every node (NATS is down; the stores stay).
    pub(crate) fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }

    /// SIGSTOPs every node (NATS stops answering at once; connections stay open), or
    /// SIGCONTs them (`resume`): a pause costs no new elections, unlike [`Cluster::kill_all`].
    pub(crate) fn pause_all(&self, resume: bool) {
        let signal = if resume { libc::SIGCONT } else { libc::SIGSTOP };
        for child in self.nodes.iter().filter_map(|n| n.child.as_ref()) {
            let pid = i32::try_from(child.id()).expect("a pid");
            // SAFETY: kill(2) on our own child's pid (not yet waited for: it still exists).
            assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal node {pid}");
        }
    }

    /// Starts every node that is not running again, and waits until the cluster is ready.
    pub(crate) fn start_all(&mut self) {
        let binary = server_binary().expect("nats-server was there at start");
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                self.spawn(&binary, i);
            }
        }
        self.wait_ready();
    }

    /// Starts node `i` again on its ports and store, and waits until it names the meta
    /// leader (its streams may still be catching up).
    pub(crate) fn restart(&mut self, i: usize) {
        let binary = server_binary().expect("nats-server was there at start");
        self.kill(i);
        self.spawn(&binary, i);
        let start = Instant::now();
        let port = self.nodes[i].http_port;
        while !http_get(port, "/jsz").is_some_and(|b| has_meta_leader(&b)) {
            assert!(
                start.elapsed() < READY_DEADLINE,
                "node n{i} did not rejoin within {READY_DEADLINE:?}; logs:\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// True when a `/jsz` answer names a meta leader (`"meta_cluster": {... "leader": "n1" ...}`).
fn has_meta_leader(body: &str) -> bool {
    let Some(at) = body.find("\"meta_cluster\"") else { return false };
    let rest = &body[at..];
    let Some(at) = rest.find("\"leader\"") else { return false };
    let rest = rest[at + "\"leader\"".len()..].trim_start().trim_start_matches(':').trim_start();
    rest.starts_with('"') && !rest.starts_with("\"\"")
}

/// A plain HTTP/1.0 GET on loopback: the body, or `None` when the node does not answer.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}
