// Drives a real node through the TypeScript client generated from its /openapi.json: the admin
// gets a token (HTTP Basic), registers an agent, issues it a credential; the agent gets a token
// (client_secret_post) and its DID document is read. Prints one JSON line of what it saw; any
// error answer makes it exit 1. Compiled with tsc together with the generated client, so a
// client that does not type-check against this use fails too.
// Usage: node use-client.js <base-url> <admin-client-id> <admin-client-secret>
import { client } from './client/client.gen.js';
import { createAgent, createCredential, getAgentDidDocument, issueToken } from './client/sdk.gen.js';

// The two members of Node's `process` used here (no @types/node needed).
declare const process: { argv: string[]; exit(code: number): never };

const [baseUrl, adminId, adminSecret] = process.argv.slice(2);

function fail(what: string, error: unknown, status?: number): never {
  console.error(`${what} failed (${status}): ${JSON.stringify(error)}`);
  process.exit(1);
}

client.setConfig({ baseUrl, auth: (a) => (a.scheme === 'basic' ? `${adminId}:${adminSecret}` : undefined) });
const admin = await issueToken({ body: { grant_type: 'client_credentials' } });
if (!admin.data) fail('admin token', admin.error, admin.response?.status);
const adminToken = admin.data.access_token;

client.setConfig({ baseUrl, auth: (a) => (a.scheme === 'bearer' ? adminToken : undefined) });
const agent = await createAgent({
  body: {
    email: 'ts-client@example.com',
    name: 'TypeScript client',
    agentType: 'screener',
    version: '1.0.0',
    owner: 'contract-tests',
    deploymentEnv: 'staging',
    capabilities: ['resume:read'],
  },
});
if (!agent.data) fail('createAgent', agent.error, agent.response?.status);
const agentId = agent.data.agentId;

const credential = await createCredential({ path: { agentId }, body: {} });
if (!credential.data) fail('createCredential', credential.error, credential.response?.status);

client.setConfig({ baseUrl, auth: () => undefined });
const token = await issueToken({
  body: { grant_type: 'client_credentials', client_id: credential.data.clientId, client_secret: credential.data.clientSecret },
});
if (!token.data) fail('agent token', token.error, token.response?.status);

const did = await getAgentDidDocument({ path: { agentId } });
if (!did.data) fail('getAgentDidDocument', did.error, did.response?.status);

console.log(JSON.stringify({
  agentId,
  agentDid: agent.data.did,
  tokenType: token.data.token_type,
  accessToken: token.data.access_token,
  didDocument: did.data,
  didContentType: did.response?.headers.get('content-type'),
}));
