//! Obtains an access token for this agent with OAuth 2.0 client_credentials (RFC 6749 §4.4) at
//! the token endpoint that the node's metadata (RFC 8414) names, then calls the node's
//! `/agent-info` with it and prints the agent's identity.

use std::process::ExitCode;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::reqwest;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde::Deserialize;

type Error = Box<dyn std::error::Error>;

/// The part of the node's RFC 8414 document this program uses.
#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    token_endpoint: String,
}

/// The node's `/agent-info` claims this program prints.
#[derive(Deserialize)]
struct AgentInfo {
    sub: String,
    name: String,
    did: String,
    organization_id: String,
    scope: String,
}

fn required(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("{name} is not set (see .env.example)").into()),
    }
}

fn run() -> Result<(), Error> {
    let node_url = required("AGENTIDP_URL")?.trim_end_matches('/').to_string();
    let client_id = required("AGENTIDP_CLIENT_ID")?;
    let client_secret = required("AGENTIDP_CLIENT_SECRET")?;
    // Plain http only when asked for (a node on your own machine): never in production.
    let allow_http = std::env::var("AGENTIDP_ALLOW_HTTP").as_deref() == Ok("1");

    let http = reqwest::blocking::Client::builder()
        // Following redirects opens the client up to SSRF (the oauth2 crate's advice).
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!allow_http)
        .timeout(Duration::from_secs(10))
        .build()?;

    // RFC 8414 discovery: the metadata names the token endpoint; its issuer must be the node's.
    let metadata: Metadata = serde_json::from_slice(
        &http
            .get(format!("{node_url}/.well-known/oauth-authorization-server"))
            .send()?
            .error_for_status()?
            .bytes()?,
    )?;
    if metadata.issuer.trim_end_matches('/') != node_url {
        return Err(format!(
            "the metadata's issuer {:?} is not {node_url:?}",
            metadata.issuer
        )
        .into());
    }

    let client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(client_secret))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(metadata.token_endpoint)?);
    let mut request = client.exchange_client_credentials();
    if let Ok(scope) = std::env::var("AGENTIDP_SCOPE") {
        for s in scope.split_whitespace() {
            request = request.add_scope(Scope::new(s.to_string()));
        }
    }
    let token = request.request(&http)?;
    println!(
        "token: {:?} token for {client_id}, expires in {} s",
        token.token_type(),
        token
            .expires_in()
            .map_or("?".to_string(), |d| d.as_secs().to_string())
    );

    let info: AgentInfo = serde_json::from_slice(
        &http
            .get(format!("{node_url}/agent-info"))
            .bearer_auth(token.access_token().secret())
            .send()?
            .error_for_status()?
            .bytes()?,
    )?;
    println!("agent: {}", info.sub);
    println!("name: {:?}", info.name);
    println!("did: {}", info.did);
    println!("organization: {}", info.organization_id);
    println!("scope: {}", info.scope);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
