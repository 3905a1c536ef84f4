"""Drives a real node through the Python client that openapi-python-client generated from its
/openapi.json: the admin gets a token (HTTP Basic), registers an agent and issues it a credential;
the agent gets a token (client_secret_post) and its DID document is read. Prints one JSON line
of what it saw; exits 1 on any error answer.

Usage: python contract_client.py <dir holding the generated package> <package> <base-url> <admin-id> <admin-secret>
"""

import base64
import importlib
import json
import os
import sys

where, package, base, admin_id, admin_secret = sys.argv[1:6]
sys.path.insert(0, where)
# openapi-python-client 0.29.1 annotates an operation with several request media types (the token
# endpoint: form and JSON) with `Unset` without importing it (a Jinja scoping slip in
# endpoint_macros.py.jinja); the name is made resolvable rather than the generated code edited.
import builtins  # noqa: E402

builtins.Unset = importlib.import_module(f"{package}.types").Unset
pkg = importlib.import_module(package)
Client = pkg.Client
AuthenticatedClient = pkg.AuthenticatedClient


def api(name):
    tag_modules = importlib.import_module(f"{package}.api")
    for sub in sorted(os.listdir(tag_modules.__path__[0])):
        if sub.startswith("_"):
            continue
        try:
            return importlib.import_module(f"{package}.api.{sub}.{name}")
        except ModuleNotFoundError:
            continue
    raise SystemExit(f"the generated client has no operation module {name}")


models = importlib.import_module(f"{package}.models")


def must(what, resp, cls):
    if resp.status_code // 100 != 2 or not isinstance(resp.parsed, cls):
        print(f"{what} failed ({resp.status_code}): {resp.content!r}", file=sys.stderr)
        sys.exit(1)
    return resp.parsed


basic = "Basic " + base64.b64encode(f"{admin_id}:{admin_secret}".encode()).decode()
anon = Client(base_url=base, headers={"Authorization": basic})
admin = must(
    "admin token",
    api("issue_token").sync_detailed(
        client=anon, body=models.TokenRequest(grant_type=models.GrantType.CLIENT_CREDENTIALS)
    ),
    models.TokenResponse,
)

authed = AuthenticatedClient(base_url=base, token=admin.access_token)
agent = must(
    "createAgent",
    api("create_agent").sync_detailed(
        client=authed,
        body=models.RegisterAgentRequest(
            email="py-client@example.com",
            name="Python client",
            agent_type=models.AgentType.CLASSIFIER,
            version="2.0.0",
            owner="contract-tests",
            deployment_env=models.DeploymentEnv.PRODUCTION,
            capabilities=["documents:read"],
        ),
    ),
    models.RegisteredAgent,
)

credential = must(
    "createCredential",
    api("create_credential").sync_detailed(
        agent_id=agent.agent_id, client=authed, body=models.CreateCredentialRequest()
    ),
    models.IssuedCredential,
)

token = must(
    "agent token",
    api("issue_token").sync_detailed(
        client=Client(base_url=base),
        body=models.TokenRequest(
            grant_type=models.GrantType.CLIENT_CREDENTIALS,
            client_id=credential.client_id,
            client_secret=credential.client_secret,
        ),
    ),
    models.TokenResponse,
)

did = api("get_agent_did_document").sync_detailed(agent_id=agent.agent_id, client=Client(base_url=base))
if did.status_code != 200:
    print(f"getAgentDidDocument failed ({did.status_code}): {did.content!r}", file=sys.stderr)
    sys.exit(1)
document = did.parsed.to_dict() if hasattr(did.parsed, "to_dict") else json.loads(did.content)

print(json.dumps({
    "agentId": str(agent.agent_id),
    "agentDid": agent.did,
    "tokenType": token.token_type,
    "accessToken": token.access_token,
    "didDocument": document,
    "didContentType": did.headers.get("content-type"),
}))
