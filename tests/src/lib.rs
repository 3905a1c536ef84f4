//! Harness for the end-to-end tests: starts real `agentidp` processes on `127.0.0.1:0` with
//! real data directories, and talks to them over real HTTP — or HTTPS, with certificates from a
//! throwaway [`TestCa`].

// A test harness: failing loudly on a broken environment is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod tools;

/// Path of the `agentidp` binary of this build profile, built once per test run.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("node", "agentidp")).clone()
}

/// Whether the `agentidp` under test is built with its `gossip` feature (the default). With
/// `AGENTIDP_E2E_NO_GOSSIP=1`, the suite builds and tests the binary without it: everything
/// but gossip must behave exactly the same.
pub fn gossip_built() -> bool {
    std::env::var_os("AGENTIDP_E2E_NO_GOSSIP").is_none_or(|v| v.is_empty() || v == "0")
}

/// Path of the `agentidp-conformance` binary of this build profile, built once per test run.
pub fn conformance_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("conformance", "agentidp-conformance"))
        .clone()
}

/// Builds binary `bin` of workspace package `package` in this build profile; returns its path.
fn build_bin(package: &str, bin: &str) -> PathBuf {
    // target/<profile>/deps/e2e-<hash> or target/<profile>/agentidp-load
    //   -> target/<profile>/<bin>
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    // `cargo test` runs us with the variables it sets for the crate under test
    // (CARGO_MANIFEST_DIR=.../tests, CARGO_PKG_NAME=tests, ...). Build scripts that watch
    // them (ring's does) would see a change against a build from the shell, so every test
    // run and every later `cargo build` would rebuild ring, rustls and the node.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let per_crate = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if per_crate {
            cmd.env_remove(name);
        }
    }
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    if package == "node" && !gossip_built() {
        cmd.arg("--no-default-features");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build of {bin} failed");
    let path = dir.join(bin);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// A running node.
pub struct Node {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`, or `https://127.0.0.1:<port>` when started with TLS.
    pub base: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its engine (`redb` or `sled`).
    pub store: String,
    /// Its log file (stderr).
    pub log: PathBuf,
    /// The offset file of its test clock (`serve --clock-file`), when it runs on one.
    clock: Option<PathBuf>,
}

impl Node {
    /// Starts a node on a free port with the given data directory and engine, and waits until
    /// it listens.
    pub fn start(data_dir: &Path, store: &str) -> Node {
        Node::start_with(data_dir, store, &[])
    }

    /// Like [`Node::start`] with extra `serve` arguments.
    ///
    /// The node runs on a test clock (`serve --clock-file <data-dir>.clock` with
    /// `AGENTIDP_TEST_CLOCK=1`) that [`Node::advance`] moves; the offset file stays beside
    /// the data directory, so a node restarted on it keeps the time it had.
    pub fn start_with(data_dir: &Path, store: &str, extra: &[&str]) -> Node {
        Node::launch(&binary(), &[], data_dir, store, extra, true, &[])
    }

    /// Like [`Node::start_with`], with extra environment variables (e.g. `SSL_CERT_FILE`, which
    /// the node's outbound client reads its trusted roots from instead of the system store).
    pub fn start_with_env(
        data_dir: &Path,
        store: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        Node::launch(&binary(), &[], data_dir, store, extra, true, env)
    }

    /// Like [`Node::start_with`], on the system clock, as an operator runs it (the load tool
    /// measures this).
    pub fn start_on_system_clock(data_dir: &Path, store: &str, extra: &[&str]) -> Node {
        Node::launch(&binary(), &[], data_dir, store, extra, false, &[])
    }

    /// Like [`Node::start_on_system_clock`], with extra environment variables.
    pub fn start_on_system_clock_with_env(
        data_dir: &Path,
        store: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        Node::launch(&binary(), &[], data_dir, store, extra, false, env)
    }

    /// Like [`Node::start_on_system_clock`], running `program` (e.g. another build of
    /// `agentidp`) behind the command `prefix` (e.g. `["prlimit", "--nofile=1024:1024"]`;
    /// empty for none).
    pub fn start_program(
        program: &Path,
        prefix: &[&str],
        data_dir: &Path,
        store: &str,
        extra: &[&str],
    ) -> Node {
        Node::launch(program, prefix, data_dir, store, extra, false, &[])
    }

    // The child is waited for by `kill9`, `stop` or `Drop`.
    #[allow(clippy::zombie_processes)]
    fn launch(
        program: &Path,
        prefix: &[&str],
        data_dir: &Path,
        store: &str,
        extra: &[&str],
        test_clock: bool,
        env: &[(&str, &str)],
    ) -> Node {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let log = data_dir.with_extension("log");
        let clock = test_clock.then(|| data_dir.with_extension("clock"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let mut cmd = match prefix.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
        };
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--store", store, "--log", "info"])
            .arg("--data-dir")
            .arg(data_dir);
        if let Some(file) = &clock {
            cmd.arg("--clock-file")
                .arg(file)
                .env("AGENTIDP_TEST_CLOCK", "1");
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn agentidp");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut reader = BufReader::new(stdout);
        loop {
            line.clear();
            let n = reader.read_line(&mut line).expect("read stdout");
            if let Some(url) = line.trim().strip_prefix("agentidp listening on ") {
                let base = url.to_string();
                // Keep draining stdout so the node never blocks on a full pipe.
                std::thread::spawn(move || for _ in reader.lines() {});
                return Node {
                    child: Some(child),
                    base,
                    data_dir: data_dir.to_path_buf(),
                    store: store.into(),
                    log,
                    clock,
                };
            }
            if n == 0 || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("agentidp did not start; its log:\n{log}");
            }
        }
    }

    /// Like [`Node::start_with`], serving HTTPS with the given PEM certificate chain and key
    /// (see [`TestCa::write_leaf`]); `base` is then `https://127.0.0.1:<port>`.
    pub fn start_tls(
        data_dir: &Path,
        store: &str,
        cert: &Path,
        key: &Path,
        extra: &[&str],
    ) -> Node {
        let cert = cert.to_str().expect("certificate path is UTF-8");
        let key = key.to_str().expect("key path is UTF-8");
        let mut args = vec!["--tls-cert", cert, "--tls-key", key];
        args.extend_from_slice(extra);
        let node = Node::start_with(data_dir, store, &args);
        assert!(
            node.base.starts_with("https://"),
            "a TLS node announced {}",
            node.base
        );
        node
    }

    /// The port the node listens on.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the base URL")
    }

    /// Moves the node's clock forward by `d`: every wall-clock rule (token lifetimes, grace
    /// periods, rate-limit windows, the partner key cache, anchor expiry) sees the time `d`
    /// later from the next request on. Timers of real durations (connection timeouts, gossip
    /// heartbeats) are not moved.
    pub fn advance(&self, d: Duration) {
        let file = self
            .clock
            .as_ref()
            .expect("this node runs on the system clock (started without the test clock)");
        let now: i64 = match std::fs::read_to_string(file) {
            Ok(text) => text.trim().parse().expect("offset file holds an integer"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("read {}: {e}", file.display()),
        };
        let ms = i64::try_from(d.as_millis()).expect("a sane duration");
        // Replaced whole (rename), so that the node never reads it half-written.
        let tmp = file.with_extension("clock-tmp");
        std::fs::write(&tmp, (now + ms).to_string()).expect("write offset file");
        std::fs::rename(&tmp, file).expect("replace offset file");
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident set size of the node so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The instance admin credential from `<data-dir>/admin-credentials.json`.
    pub fn admin(&self) -> (String, String) {
        let v: Value = serde_json::from_slice(
            &std::fs::read(self.data_dir.join("admin-credentials.json")).expect("admin file"),
        )
        .expect("admin json");
        (
            v["client_id"].as_str().expect("client_id").to_string(),
            v["client_secret"]
                .as_str()
                .expect("client_secret")
                .to_string(),
        )
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("wait");
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("node already stopped");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        c.wait().expect("wait")
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP client for one node.
#[derive(Clone)]
pub struct Api {
    /// Base URL.
    pub base: String,
    /// The client.
    pub http: reqwest::Client,
}

/// A response: status and body (JSON when it parses, else a string).
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Value,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
}

impl Api {
    /// A client for `base`.
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// A client for `base` (an `https://` URL) that trusts exactly one certificate authority,
    /// given as PEM (e.g. [`TestCa::cert_pem`]): no built-in or system roots.
    pub fn with_ca(base: &str, ca_pem: &str) -> Api {
        Api {
            base: base.to_string(),
            http: https_client(ca_pem).build().expect("reqwest client"),
        }
    }

    async fn finish(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            body,
            headers,
        }
    }

    /// Any request: method, path, optional bearer token, optional JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Api::finish(req.send().await.expect("send")).await
    }

    /// A raw request with explicit headers and body bytes.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Api::finish(req.send().await.expect("send")).await
    }

    /// A form POST (`application/x-www-form-urlencoded`) to `path`, as OAuth endpoints take.
    pub async fn form(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("send");
        Api::finish(r).await
    }

    /// client_credentials with client_secret_post; returns the whole response.
    pub async fn token_response(&self, client_id: &str, secret: &str, scope: Option<&str>) -> Resp {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.form("/api/v1/token", &form).await
    }

    /// An access token, or a panic with the error body.
    pub async fn token(&self, client_id: &str, secret: &str) -> String {
        let r = self.token_response(client_id, secret, None).await;
        assert_eq!(r.status, 200, "token request failed: {:?}", r.body);
        r.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Creates an organization as the instance admin; returns (org id, admin client id, secret).
    pub async fn create_org(&self, admin_token: &str, slug: &str) -> (String, String, String) {
        let r = self
            .call(
                "POST",
                "/api/v1/organizations",
                Some(admin_token),
                Some(serde_json::json!({ "name": slug, "slug": slug, "planTier": "enterprise" })),
            )
            .await;
        assert_eq!(r.status, 201, "create org: {:?}", r.body);
        (
            r.body["organizationId"]
                .as_str()
                .expect("org id")
                .to_string(),
            r.body["admin"]["credential"]["clientId"]
                .as_str()
                .expect("client id")
                .to_string(),
            r.body["admin"]["credential"]["clientSecret"]
                .as_str()
                .expect("secret")
                .to_string(),
        )
    }

    /// Registers an agent with the given email; returns its JSON.
    pub async fn register_agent(&self, token: &str, email: &str) -> Value {
        let r = self
            .call(
                "POST",
                "/api/v1/agents",
                Some(token),
                Some(agent_body(email)),
            )
            .await;
        assert_eq!(r.status, 201, "register: {:?}", r.body);
        r.body
    }
}

/// A reqwest client builder over rustls that trusts only `ca_pem` (no built-in or system roots)
/// and gives up after 30 s; for tests that need more settings than [`Api::with_ca`].
pub fn https_client(ca_pem: &str) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate PEM");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
}

/// A throwaway certificate authority (ECDSA P-256) that issues server certificates, for HTTPS
/// tests: clients trust it with [`Api::with_ca`], nodes serve its leaves with
/// [`Node::start_tls`].
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agentidp test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert_pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            params,
            key,
            cert_pem,
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses, e.g. `localhost`,
    /// `127.0.0.1`) with a fresh key: (certificate PEM, PKCS#8 private key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("subject alternative names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("agentidp"),
        );
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// [`TestCa::leaf`] written to `<dir>/cert.pem` and `<dir>/key.pem` (`dir` is created);
    /// returns their paths, for `--tls-cert` and `--tls-key`.
    pub fn write_leaf(&self, dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).expect("create certificate dir");
        let (cert, key) = self.leaf(names);
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert).expect("write certificate");
        std::fs::write(&key_path, key).expect("write key");
        (cert_path, key_path)
    }
}

/// A valid registration body.
pub fn agent_body(email: &str) -> Value {
    serde_json::json!({
        "email": email,
        "agentType": "screener",
        "version": "1.0.0",
        "capabilities": ["resume:read"],
        "owner": "team-a",
        "deploymentEnv": "production",
        "scopes": ["agents:read"]
    })
}

/// A port that was free a moment ago on 127.0.0.1 (for nodes whose public URL must name their
/// port before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a probe port")
        .port()
}

/// `serve` arguments of a gossip node on fixed ports (so that it keeps its DID and address
/// across restarts): HTTP on `http`, gossip on `gossip`, dialling `peers` (gossip ports),
/// applying the anchors of `trust`, publishing its own partners when `publish`; the outbound
/// guard relaxed for loopback partners.
pub fn gossip_args(
    http: u16,
    gossip: u16,
    peers: &[u16],
    trust: &[String],
    publish: bool,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--listen".into(),
        format!("127.0.0.1:{http}"),
        "--gossip-listen".into(),
        format!("/ip4/127.0.0.1/tcp/{gossip}"),
        "--allow-private-fetch".into(),
        "--allow-http-fetch".into(),
    ];
    for p in peers {
        args.push("--gossip-peer".into());
        args.push(format!("/ip4/127.0.0.1/tcp/{p}"));
    }
    for t in trust {
        args.push("--gossip-trust".into());
        args.push(t.clone());
    }
    if publish {
        args.push("--gossip-publish".into());
    }
    args
}

/// The did:web of a node serving plain HTTP on 127.0.0.1:`port` without `--public-url`.
pub fn loopback_did(port: u16) -> String {
    format!("did:web:127.0.0.1%3A{port}")
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
