"""Obtains an access token for this agent with OAuth 2.0 client_credentials (RFC 6749 §4.4) at
the token endpoint that the node's metadata (RFC 8414) names, then calls the node's /agent-info
with it and prints the agent's identity."""

import os
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata, get_well_known_url


def required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set (see .env.example)")
    return value


def main() -> None:
    node_url = required("AGENTIDP_URL").rstrip("/")
    client_id = required("AGENTIDP_CLIENT_ID")
    client_secret = required("AGENTIDP_CLIENT_SECRET")
    scope = os.environ.get("AGENTIDP_SCOPE") or None
    # Plain http only when asked for (a node on your own machine): Authlib's documented switch
    # (Authlib itself already lets http through to loopback addresses, RFC 8252 §7.3).
    if os.environ.get("AGENTIDP_ALLOW_HTTP") == "1":
        os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

    # RFC 8414 discovery: the metadata names the token endpoint; its issuer must be the node's.
    response = requests.get(
        get_well_known_url(node_url, external=True), timeout=10, allow_redirects=False
    )
    response.raise_for_status()
    metadata = AuthorizationServerMetadata(response.json())
    metadata.validate_issuer()
    metadata.validate_token_endpoint()
    if metadata["issuer"].rstrip("/") != node_url:
        sys.exit(f"the metadata's issuer {metadata['issuer']!r} is not {node_url!r}")

    with OAuth2Session(
        client_id,
        client_secret,
        scope=scope,
        token_endpoint_auth_method="client_secret_basic",
    ) as client:
        token = client.fetch_token(
            metadata["token_endpoint"], grant_type="client_credentials", timeout=10
        )
        print(
            f"token: {token['token_type']} token for {client_id}, "
            f"expires in {token.get('expires_in', '?')} s"
        )
        info = client.get(f"{node_url}/agent-info", timeout=10, allow_redirects=False)
        if info.status_code != 200:
            sys.exit(f"/agent-info answered {info.status_code}: {info.text}")
        claims = info.json()
    print(f"agent: {claims['sub']}")
    print(f"name: {claims['name']!r}")
    print(f"did: {claims['did']}")
    print(f"organization: {claims['organization_id']}")
    print(f"scope: {claims['scope']}")


if __name__ == "__main__":
    main()
