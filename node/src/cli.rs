//! The command line: `agentidp serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use storage::EngineKind;

/// agentidp — an identity node for AI agents: agent registry, credentials, OAuth 2.0 access
/// tokens, did:web identities and a tamper-evident audit log, on an embedded store.
#[derive(Debug, Parser)]
#[command(name = "agentidp", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node. The first start creates the signing key and writes the instance admin
    /// credential to <data-dir>/admin-credentials.json.
    Serve(Box<ServeArgs>),
    /// Manage the node's signing keys offline (the node must be stopped).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Recover administrative access offline (the node must be stopped).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Copy a whole store into a new, empty one of another engine (a redb or sled data
    /// directory into PostgreSQL, or back), verifying the audit chain on both sides. Stop the
    /// nodes of both sides first.
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// The store to copy: redb:<data-dir>, sled:<data-dir> or a postgres:// URL.
    #[arg(long, value_name = "STORE")]
    from: String,
    /// The new, empty store: redb:<data-dir>, sled:<data-dir> or a postgres:// URL.
    #[arg(long, value_name = "STORE")]
    to: String,
    /// A file holding the password of the postgres side (its first line); never logged.
    #[arg(long, env = "AGENTIDP_DATABASE_PASSWORD_FILE", value_name = "FILE")]
    database_password_file: Option<PathBuf>,
}

/// Opens one side of `agentidp migrate`.
fn migrate_side(
    spec: &str,
    password: Option<&String>,
) -> Result<std::sync::Arc<dyn storage::Engine>, String> {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let mut opts = storage::PgOptions::new(spec);
        opts.password = password.cloned();
        opts.timeout = std::time::Duration::from_secs(30);
        return storage::PgEngine::open(&opts)
            .map(|e| std::sync::Arc::new(e) as std::sync::Arc<dyn storage::Engine>)
            .map_err(|e| e.to_string());
    }
    let (kind, dir) = spec
        .split_once(':')
        .ok_or_else(|| format!("{spec:?}: use redb:<dir>, sled:<dir> or postgres://…"))?;
    let kind: EngineKind = kind.parse()?;
    if kind == EngineKind::Postgres {
        return Err(format!(
            "{spec:?}: give the postgres side as a postgres:// URL"
        ));
    }
    storage::open_engine(std::path::Path::new(dir), kind).map_err(|e| e.to_string())
}

fn migrate(args: MigrateArgs) -> ExitCode {
    let password = match &args.database_password_file {
        None => None,
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.lines().next().unwrap_or("").to_string()),
            Err(e) => {
                eprintln!("agentidp: --database-password-file {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let sides = migrate_side(&args.from, password.as_ref())
        .and_then(|f| Ok((f, migrate_side(&args.to, password.as_ref())?)));
    let (from, to) = match sides {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agentidp: migrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match storage::copy::copy_store(from, to) {
        Ok(r) => {
            println!(
                "copied {} pairs; audit chain verified on both sides: {} entries, head {}",
                r.pairs, r.destination.entries, r.destination.head_hash
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agentidp: migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Issue a new instance-admin credential into <data-dir>/admin-credentials.json (mode
    /// 0600), audited as node.admin_recover. The admin named by that file gets it if it is
    /// still an active instance admin; otherwise a new instance admin is created. Refuses a
    /// data directory that a running node holds.
    Recover(RecoverArgs),
}

#[derive(Debug, clap::Args)]
struct RecoverArgs {
    /// Data directory of the (stopped) node.
    #[arg(long, env = "AGENTIDP_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Storage engine of that directory.
    #[arg(long, env = "AGENTIDP_STORE", value_enum, default_value = "redb")]
    store: StoreArg,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new signing key the active one; the old key stays published for the grace period
    /// (set by `serve --key-grace`). A running node rotates with POST /api/v1/keys/rotate instead.
    Rotate(RotateArgs),
}

#[derive(Debug, clap::Args)]
struct RotateArgs {
    /// Data directory of the (stopped) node.
    #[arg(long, env = "AGENTIDP_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Storage engine of that directory.
    #[arg(long, env = "AGENTIDP_STORE", value_enum, default_value = "redb")]
    store: StoreArg,
    /// Algorithm of the new key.
    #[arg(long, value_enum, default_value = "es256")]
    alg: AlgArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgArg {
    /// ECDSA P-256 with SHA-256 (default; fast, small tokens).
    #[value(name = "ES256", alias = "es256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, for relying parties that only know RSA.
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
}

impl AlgArg {
    fn as_str(self) -> &'static str {
        match self {
            AlgArg::Es256 => "ES256",
            AlgArg::Rs256 => "RS256",
        }
    }
}

impl StoreArg {
    fn kind(self) -> EngineKind {
        match self {
            StoreArg::Redb => EngineKind::Redb,
            StoreArg::Sled => EngineKind::Sled,
            StoreArg::Postgres => EngineKind::Postgres,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StoreArg {
    /// redb (default): ACID, survived every crash and power-cut test.
    Redb,
    /// sled 0.34 with agentidp's fdatasync workaround for its unsafe flush.
    Sled,
    /// PostgreSQL (--database-url): one database shared by several nodes (serve only).
    Postgres,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines with key=value fields.
    Text,
    /// One JSON object per line.
    Json,
}

/// A flag given twice takes its last value (so wrappers can append overrides).
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "AGENTIDP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Public base URL: the token issuer and the did:web host (e.g. https://idp.example.com).
    /// Default: http://<listen address>, or https://<listen address> with --tls-cert.
    #[arg(long, env = "AGENTIDP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve HTTPS (TLS 1.2/1.3) with this certificate chain: a PEM file, leaf certificate
    /// first. Needs --tls-key. did:web resolvers fetch documents only over https.
    #[arg(
        long,
        env = "AGENTIDP_TLS_CERT",
        requires = "tls_key",
        value_name = "PEM_FILE"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of the --tls-cert certificate: a PEM file (PKCS#8, SEC1 or PKCS#1).
    #[arg(
        long,
        env = "AGENTIDP_TLS_KEY",
        requires = "tls_cert",
        value_name = "PEM_FILE"
    )]
    tls_key: Option<PathBuf>,
    /// Directory of the store and the admin credential file; created if missing.
    #[arg(long, env = "AGENTIDP_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Embedded storage engine. A data directory keeps the engine it was created with.
    #[arg(long, env = "AGENTIDP_STORE", value_enum, default_value = "redb")]
    store: StoreArg,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Lifetime of access tokens, in seconds (60 to 86400).
    #[arg(long, env = "AGENTIDP_TOKEN_TTL", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..=86400))]
    token_ttl: i64,
    /// Algorithm of the signing key. Changing it on an existing data directory rotates the key
    /// at start-up (the old one stays published for the grace period).
    #[arg(
        long,
        env = "AGENTIDP_SIGNING_ALG",
        value_enum,
        default_value = "es256"
    )]
    signing_alg: AlgArg,
    /// Seconds a retired signing key stays in the JWKS after a rotation.
    /// Default: --token-ttl + 300, so every token it signed can be verified until it expires.
    #[arg(long, env = "AGENTIDP_KEY_GRACE", value_parser = clap::value_parser!(i64).range(0..=31_536_000))]
    key_grace: Option<i64>,
    /// Token endpoint requests per second allowed per client id (bursts of twice that); more
    /// get 429 with Retry-After. 0 turns the limit off.
    #[arg(long, env = "AGENTIDP_TOKEN_RATE_LIMIT", default_value_t = 50)]
    token_rate_limit: u32,
    /// OASF schema folder (the OASF definition files: skills/, domains/ ...). When given, the
    /// skills and domains of registrations must be entries of its taxonomy (id and name).
    #[arg(long, env = "AGENTIDP_OASF_SCHEMA")]
    oasf_schema: Option<PathBuf>,
    /// Let the outbound client (partner JWKS, discovery and DID documents) fetch loopback,
    /// private, link-local and CGNAT addresses. Off by default: partner URLs must be public.
    /// Cloud metadata addresses stay refused. For tests and closed networks only.
    #[arg(long, env = "AGENTIDP_ALLOW_PRIVATE_FETCH")]
    allow_private_fetch: bool,
    /// Let the outbound client fetch plain http:// URLs (default: https only). Tests only.
    #[arg(long, env = "AGENTIDP_ALLOW_HTTP_FETCH")]
    allow_http_fetch: bool,
    /// Turn the public directory off (`/api/v1/marketplace/...` answers 404), like the
    /// predecessor's MARKETPLACE_ENABLED=false.
    #[arg(long, env = "AGENTIDP_NO_DIRECTORY")]
    no_directory: bool,
    /// Public directory requests per second allowed per client address (bursts of twice that);
    /// more get 429 with Retry-After. 0 turns the limit off.
    #[arg(long, env = "AGENTIDP_DIRECTORY_RATE_LIMIT", default_value_t = 20)]
    directory_rate_limit: u32,
    /// Join the trust-anchor gossip network: a libp2p multiaddr to listen on, e.g.
    /// /ip4/0.0.0.0/tcp/4001 (repeatable). Needs a binary built with the `gossip` feature.
    #[arg(
        long,
        env = "AGENTIDP_GOSSIP_LISTEN",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    gossip_listen: Vec<String>,
    /// A gossip peer to dial and keep dialling, e.g. /ip4/10.0.0.2/tcp/4001 (repeatable).
    #[arg(
        long,
        env = "AGENTIDP_GOSSIP_PEER",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    gossip_peer: Vec<String>,
    /// The DID of a node whose trust anchors this node applies (repeatable; the first listed
    /// wins when two vouch for one issuer). Anchors of any other origin are refused.
    #[arg(
        long,
        env = "AGENTIDP_GOSSIP_TRUST",
        value_name = "DID",
        value_delimiter = ','
    )]
    gossip_trust: Vec<String>,
    /// Share this node's own partners with the gossip network as signed trust anchors.
    #[arg(long, env = "AGENTIDP_GOSSIP_PUBLISH")]
    gossip_publish: bool,
    /// Seconds a client has to send a request's headers: a new connection from its accept (or
    /// TLS handshake), a keep-alive connection from the request's first byte.
    #[arg(long, env = "AGENTIDP_HEADER_TIMEOUT", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,
    /// Seconds a keep-alive connection may stay silent after a response before it is closed.
    #[arg(long, env = "AGENTIDP_IDLE_TIMEOUT", value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout: u64,
    /// Seconds a request body (at most 64 KiB) may take to arrive; then 408 and the connection
    /// is closed.
    #[arg(long, env = "AGENTIDP_BODY_TIMEOUT", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,
    /// Most connections open at once. At the cap, a new connection evicts the one idle the
    /// longest (never one running a request). Default: the open-file limit (ulimit -n) minus 64;
    /// a larger value is lowered to that.
    #[arg(long, env = "AGENTIDP_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// A reverse proxy (IPv4 or IPv6 address or CIDR network, e.g. 10.0.0.0/8; repeatable):
    /// requests whose TCP peer it is are attributed to the client named in its Forwarded or
    /// X-Forwarded-For header (audit log, per-address throttling). Other peers' headers are
    /// ignored.
    #[arg(
        long,
        env = "AGENTIDP_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = clap::value_parser!(crate::Cidr)
    )]
    trusted_proxy: Vec<crate::Cidr>,
    // --- Tenancy (issue 18): tiers, metering, analytics, billing ---
    /// Enforce the organizations' plan limits (tokens a month, requests a minute); metering
    /// runs either way. `--tier-enforcement=false` turns enforcement off.
    #[arg(long, env = "AGENTIDP_TIER_ENFORCEMENT", value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    tier_enforcement: bool,
    /// Turn the analytics routes off (they answer 404).
    #[arg(long, env = "AGENTIDP_NO_ANALYTICS")]
    no_analytics: bool,
    /// Turn the billing routes off (they answer 404).
    #[arg(long, env = "AGENTIDP_NO_BILLING")]
    no_billing: bool,
    /// Stripe secret API key (sk_…); without it the billing routes answer BILLING_NOT_CONFIGURED.
    #[arg(
        long,
        env = "AGENTIDP_STRIPE_SECRET_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    stripe_secret_key: Option<String>,
    /// Stripe webhook signing secret (whsec_…) that `POST /api/v1/billing/webhook` verifies.
    #[arg(
        long,
        env = "AGENTIDP_STRIPE_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    stripe_webhook_secret: Option<String>,
    /// Stripe price id of the pro plan.
    #[arg(long, env = "AGENTIDP_STRIPE_PRICE_PRO", value_name = "PRICE")]
    stripe_price_pro: Option<String>,
    /// Stripe price id of the enterprise plan.
    #[arg(long, env = "AGENTIDP_STRIPE_PRICE_ENTERPRISE", value_name = "PRICE")]
    stripe_price_enterprise: Option<String>,
    /// Base URL of Stripe's API (tests point it at a local server speaking the same API).
    #[arg(
        long,
        env = "AGENTIDP_STRIPE_API_BASE",
        value_name = "URL",
        default_value = "https://api.stripe.com"
    )]
    stripe_api_base: String,
    /// Tests only: the node's time is the system time plus the offset in milliseconds held in
    /// this file, re-read when it changes, so that end-to-end tests move time instead of
    /// sleeping. Hidden, and refused unless AGENTIDP_TEST_CLOCK=1 is set.
    #[arg(long, hide = true, value_name = "PATH")]
    clock_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "AGENTIDP_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. info or agentidp=debug.
    #[arg(long, env = "AGENTIDP_LOG", default_value = "info")]
    log: String,
}

/// The database of `--store postgres` (issue 19: several nodes over one PostgreSQL).
#[derive(Debug, clap::Args)]
struct DatabaseArgs {
    /// PostgreSQL URL for --store postgres, e.g. postgres://agentidp@db:5432/agentidp?sslmode=require
    /// (sslmode: disable, prefer, require). Prefer --database-password-file to a password in it.
    #[arg(
        long,
        env = "AGENTIDP_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// A file holding the database password (its first line); never logged.
    #[arg(long, env = "AGENTIDP_DATABASE_PASSWORD_FILE", value_name = "FILE")]
    database_password_file: Option<PathBuf>,
    /// PEM file of CA certificates: verify the database's certificate and host name (without
    /// it, sslmode=require encrypts without verifying, like libpq's require).
    #[arg(long, env = "AGENTIDP_DATABASE_CA_FILE", value_name = "PEM_FILE")]
    database_ca_file: Option<PathBuf>,
    /// Most connections this node opens to the database (plus one that listens for changes).
    #[arg(long, env = "AGENTIDP_DATABASE_POOL", default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=512))]
    database_pool: u32,
    /// Longest a database call may take (including waiting for a connection), in seconds;
    /// past it the request fails with 503 STORE_UNAVAILABLE.
    #[arg(long, env = "AGENTIDP_DATABASE_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    database_timeout: u64,
}

impl DatabaseArgs {
    fn options(&self, store: StoreArg) -> Result<Option<storage::PgOptions>, String> {
        let Some(url) = &self.database_url else {
            return match store {
                StoreArg::Postgres => {
                    Err("--store postgres needs --database-url (or AGENTIDP_DATABASE_URL)".into())
                }
                _ => Ok(None),
            };
        };
        if !matches!(store, StoreArg::Postgres) {
            return Err("--database-url is for --store postgres".into());
        }
        let mut opts = storage::PgOptions::new(url.clone());
        if let Some(f) = &self.database_password_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--database-password-file {}: {e}", f.display()))?;
            opts.password = Some(text.lines().next().unwrap_or("").to_string());
        }
        opts.pool_size = self.database_pool as usize;
        opts.timeout = std::time::Duration::from_secs(self.database_timeout);
        opts.ca_file = self.database_ca_file.clone();
        Ok(Some(opts))
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Keys(KeysCommand::Rotate(args)) => rotate(args),
        Command::Admin(AdminCommand::Recover(args)) => recover(args),
        Command::Migrate(args) => migrate(args),
    }
}

fn recover(args: RecoverArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(crate::app::boot::recover_admin(
        &args.data_dir,
        args.store.kind(),
    )) {
        Ok(r) => {
            if r.created {
                println!(
                    "no active instance admin was left: created instance admin {}",
                    r.admin_id
                );
            }
            println!(
                "new credential for instance admin {} written to {} (mode 0600); revoke credentials you no longer trust once the node runs",
                r.admin_id,
                r.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agentidp: admin recovery failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("agentidp: cannot start the async runtime: {e}");
            None
        }
    }
}

fn rotate(args: RotateArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(crate::app::boot::rotate_offline(
        &args.data_dir,
        args.store.kind(),
        args.alg.as_str(),
    )) {
        Ok((kid, retired)) => {
            println!("new signing key {kid} ({})", args.alg.as_str());
            if let Some(r) = retired {
                println!("retired {r}: it stays in the JWKS for the grace period, then leaves it");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agentidp: key rotation failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    let cfg = crate::ServeConfig {
        listen: args.listen,
        public_url: args.public_url,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::TlsFiles { cert, key }),
            // clap's `requires` refuses one without the other.
            _ => None,
        },
        data_dir: args.data_dir,
        store: args.store.kind(),
        database: match args.database.options(args.store) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("agentidp: {e}");
                return ExitCode::FAILURE;
            }
        },
        token_ttl_secs: args.token_ttl,
        signing_alg: args.signing_alg.as_str().to_string(),
        key_grace_secs: args.key_grace,
        token_rate_limit: args.token_rate_limit,
        oasf_schema: args.oasf_schema,
        allow_private_fetch: args.allow_private_fetch,
        allow_http_fetch: args.allow_http_fetch,
        directory: !args.no_directory,
        directory_rate_limit: args.directory_rate_limit,
        gossip: crate::GossipOptions {
            listen: args.gossip_listen,
            peers: args.gossip_peer,
            trust: args.gossip_trust,
            publish: args.gossip_publish,
        },
        connections: crate::ConnectionOptions {
            header_timeout: std::time::Duration::from_secs(args.header_timeout),
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
            body_timeout: std::time::Duration::from_secs(args.body_timeout),
            max_connections: args
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            trusted_proxies: args.trusted_proxy,
        },
        test_clock_file: args.clock_file,
        tenancy: crate::TenancyOptions {
            tier_enforcement: args.tier_enforcement,
            analytics: !args.no_analytics,
            billing: !args.no_billing,
            stripe: crate::StripeOptions {
                secret_key: args.stripe_secret_key,
                webhook_secret: args.stripe_webhook_secret,
                price_pro: args.stripe_price_pro,
                price_enterprise: args.stripe_price_enterprise,
                api_base: args.stripe_api_base,
            },
        },
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agentidp could not start");
            eprintln!("agentidp: {e}");
            ExitCode::FAILURE
        }
    }
}
