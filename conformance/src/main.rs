//! `agentidp-conformance`: hold an identity node to did:web, DID Core, OIDC Discovery, OAuth 2.0
//! (RFC 6749 / RFC 9068), A2A v1.0 cards, OASF records and VCDM 2.0 badges, over HTTP.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use conformance::{report, Ctx, Options, Scope, CHECKS, SUITES};
use oasf::Taxonomy;
use uuid::Uuid;

/// agentidp-conformance — checks any identity node, over HTTP only, against the standards it
/// claims (did:web, DID Core, OIDC Discovery and JWKS, OAuth 2.0 with RFC 9068 tokens, A2A v1.0
/// agent cards, OASF records, VCDM 2.0 Agent Badges).
#[derive(Debug, Parser)]
#[command(name = "agentidp-conformance", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the checks against a node and print a report.
    ///
    /// Exit status 0 only if every selected check passes. Skipped checks (e.g. the `oauth`
    /// suite without --client-id/--client-secret, agent checks without --agent) are reported as
    /// skipped, not failed, and do not fail the run. Exit status 1: some check failed; 2: usage
    /// or setup error.
    Run(Box<RunArgs>),
    /// List every check: id, suite, the spec clause it enforces, and what it checks.
    List,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Base URL of the node (its public URL / OAuth issuer), http or https.
    #[arg(long)]
    target: String,
    /// Run only this suite (repeatable): did-web, did-core, did-resolution, oidc, oauth, a2a-card,
    /// oasf, badge.
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// Client id for the `oauth` suite (client_credentials, client_secret_post).
    #[arg(
        long,
        env = "AGENTIDP_CONFORMANCE_CLIENT_ID",
        requires = "client_secret"
    )]
    client_id: Option<String>,
    /// Client secret for the `oauth` suite.
    #[arg(
        long,
        env = "AGENTIDP_CONFORMANCE_CLIENT_SECRET",
        requires = "client_id",
        hide_env_values = true
    )]
    client_secret: Option<String>,
    /// An agent (uuid) whose DID document, card, OASF record and badge are checked (repeatable).
    #[arg(long = "agent")]
    agents: Vec<Uuid>,
    /// An agent (uuid) expected to be deactivated: its DID document must answer 410 (repeatable).
    #[arg(long = "deactivated-agent")]
    deactivated_agents: Vec<Uuid>,
    /// Base URL of the DID resolver the `did-resolution` suite checks (its
    /// `/1.0/identifiers/{did}`), e.g. a Universal Resolver; the target by default.
    #[arg(long)]
    resolver: Option<String>,
    /// PEM certificate(s) to trust for an https target: the target's CA, or a bundle such as
    /// /etc/ssl/certs/ca-certificates.crt (no other root is trusted).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Folder of OASF definition files (e.g. schema-v1.0.4): also check skill and domain ids
    /// and names against that taxonomy.
    #[arg(long)]
    oasf_schema: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A readable table.
    Text,
    /// JSON, one object per check result.
    Json,
    /// JUnit XML, one testsuite per suite.
    Junit,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::List => {
            list();
            ExitCode::SUCCESS
        }
        Command::Run(args) => match run(*args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("agentidp-conformance: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn list() {
    let w = CHECKS.iter().map(|c| c.id.len()).max().unwrap_or(0);
    let cw = CHECKS.iter().map(|c| c.clause.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<w$}  {:<8}  {:<5}  {:<cw$}  DESCRIPTION",
        "CHECK", "SUITE", "SCOPE", "CLAUSE"
    );
    for c in CHECKS {
        let scope = match c.scope {
            Scope::Node(_) => "node",
            Scope::Agent(_) => "agent",
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:<8}  {:<5}  {:<cw$}  {}",
            c.id, c.suite, scope, c.clause, c.description
        );
    }
}

fn run(args: RunArgs) -> Result<bool, String> {
    for s in &args.suites {
        if !SUITES.contains(&s.as_str()) {
            return Err(format!(
                "unknown suite {s:?}; suites: {}",
                SUITES.join(", ")
            ));
        }
    }
    let ca = match &args.ca_cert {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("--ca-cert {}: {e}", p.display()))?),
        None => None,
    };
    let taxonomy = match &args.oasf_schema {
        Some(p) => {
            Some(Taxonomy::load_dir(p).map_err(|e| format!("--oasf-schema {}: {e}", p.display()))?)
        }
        None => None,
    };
    let opts = Options {
        client_id: args.client_id,
        client_secret: args.client_secret,
        agents: args.agents,
        deactivated_agents: args.deactivated_agents,
        taxonomy,
        resolver: args.resolver,
    };
    let ctx = Ctx::new(&args.target, ca.as_deref(), opts)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let results = rt.block_on(conformance::run(&ctx, &args.suites, |r| {
        eprintln!(
            "[{}] {} {}",
            r.outcome.label(),
            r.name(),
            r.outcome.detail()
        );
    }));
    let text = match args.format {
        Format::Text => report::text(&ctx.target, &results),
        Format::Json => report::json(&ctx.target, &results),
        Format::Junit => report::junit(&ctx.target, &results),
    };
    match &args.out {
        Some(p) => std::fs::write(p, &text).map_err(|e| format!("--out {}: {e}", p.display()))?,
        None => print!("{text}"),
    }
    let (_, failed, _) = report::counts(&results);
    Ok(failed == 0)
}
