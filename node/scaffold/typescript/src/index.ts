// Obtains an access token for this agent with OAuth 2.0 client_credentials (RFC 6749 §4.4) at
// the token endpoint that the node's discovery document names, then calls the node's
// /agent-info with it and prints the agent's identity.
import * as client from "openid-client";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set (see .env.example)`);
    process.exit(2);
  }
  return value;
}

const nodeUrl = new URL(required("AGENTIDP_URL"));
const clientId = required("AGENTIDP_CLIENT_ID");
const clientSecret = required("AGENTIDP_CLIENT_SECRET");
const scope = process.env.AGENTIDP_SCOPE;
// Plain http only when asked for (a node on your own machine): never in production.
const allowHttp = process.env.AGENTIDP_ALLOW_HTTP === "1";

const config = await client.discovery(
  nodeUrl,
  clientId,
  undefined,
  client.ClientSecretBasic(clientSecret),
  { execute: allowHttp ? [client.allowInsecureRequests] : [] },
);

const tokens = await client.clientCredentialsGrant(config, scope ? { scope } : {});
console.log(`token: ${tokens.token_type} token for ${clientId}, expires in ${tokens.expires_in ?? "?"} s`);

const response = await client.fetchProtectedResource(
  config,
  tokens.access_token,
  new URL("/agent-info", nodeUrl),
  "GET",
);
if (!response.ok) {
  console.error(`/agent-info answered ${response.status}: ${await response.text()}`);
  process.exit(1);
}
const info = (await response.json()) as Record<string, unknown>;
console.log(`agent: ${info.sub}`);
console.log(`name: ${JSON.stringify(info.name)}`);
console.log(`did: ${info.did}`);
console.log(`organization: ${info.organization_id}`);
console.log(`scope: ${info.scope}`);
