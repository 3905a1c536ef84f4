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
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StoreArg {
    /// redb (default): ACID, survived every crash and power-cut test.
    Redb,
    /// sled 0.34 with agentidp's fdatasync workaround for its unsafe flush.
    Sled,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines with key=value fields.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "AGENTIDP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Public base URL: the token issuer and the did:web host (e.g. https://idp.example.com).
    /// Default: http://<listen address>.
    #[arg(long, env = "AGENTIDP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Directory of the store and the admin credential file; created if missing.
    #[arg(long, env = "AGENTIDP_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Embedded storage engine. A data directory keeps the engine it was created with.
    #[arg(long, env = "AGENTIDP_STORE", value_enum, default_value = "redb")]
    store: StoreArg,
    /// Lifetime of access tokens, in seconds (60 to 86400).
    #[arg(long, env = "AGENTIDP_TOKEN_TTL", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..=86400))]
    token_ttl: i64,
    /// Log format.
    #[arg(long, env = "AGENTIDP_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. info or agentidp=debug.
    #[arg(long, env = "AGENTIDP_LOG", default_value = "info")]
    log: String,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
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
        data_dir: args.data_dir,
        store: match args.store {
            StoreArg::Redb => EngineKind::Redb,
            StoreArg::Sled => EngineKind::Sled,
        },
        token_ttl_secs: args.token_ttl,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentidp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
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
