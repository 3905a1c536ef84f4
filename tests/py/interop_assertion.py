"""Imports the private JWK agentidp generated for an agent with joserfc (an independent JOSE
library), signs an RFC 7523 private_key_jwt client assertion with it (one hour of life) and asks
the node's token endpoint for an access token.

Usage: interop_assertion.py <private-jwk-file> <agent-id> <token-endpoint>
Prints the token endpoint's HTTP status and JSON body as one JSON line.
"""
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from joserfc import jwt
from joserfc.jwk import ECKey

jwk_file, agent_id, token_url = sys.argv[1:4]
with open(jwk_file) as f:
    private = json.load(f)
key = ECKey.import_key(private)
assert key.is_private, "the generated JWK imports as a private key"
now = int(time.time())
claims = {"iss": agent_id, "sub": agent_id, "aud": token_url, "iat": now, "exp": now + 3600,
          "jti": str(uuid.uuid4())}
assertion = jwt.encode({"alg": private["alg"], "kid": private["kid"]}, claims, key)
body = urllib.parse.urlencode({
    "grant_type": "client_credentials",
    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "client_assertion": assertion,
}).encode()
req = urllib.request.Request(token_url, data=body,
                             headers={"content-type": "application/x-www-form-urlencoded"})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        status, text = r.status, r.read()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read()
print(json.dumps({"status": status, "body": json.loads(text)}))
