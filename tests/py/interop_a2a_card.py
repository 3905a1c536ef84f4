"""Validates and verifies A2A agent cards with the official A2A SDK (a2a-sdk, A2A 1.0): parses
each card into the SDK's AgentCard model (unknown members refused), checks the fields the spec
marks REQUIRED (present and non-empty, a2a.utils.proto_utils.validate_proto_required_fields), and
verifies its signature with the SDK's verifier (a2a.utils.signing.create_signature_verifier),
whose key provider fetches the JWK Set the protected header's `jku` names. As a control, the same
verifier must refuse the card once its name is changed.

Usage: interop_a2a_card.py <card-url>...
Prints one line per card: `ok <url> <kid>`; exits non-zero on the first failure.
"""
import json
import sys
import urllib.request

from google.protobuf import json_format
from jwt import PyJWK

from a2a.types import AgentCard
from a2a.utils.proto_utils import validate_proto_required_fields
from a2a.utils.signing import InvalidSignaturesError, create_signature_verifier


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            raise SystemExit(f"{url} answered {r.status}")
        return json.loads(r.read())


used = []


def key_provider(kid, jku):
    if not kid or not jku:
        raise SystemExit(f"the protected header lacks kid or jku: {kid!r} {jku!r}")
    for k in fetch(jku)["keys"]:
        if k.get("kid") == kid:
            used.append(kid)
            return PyJWK(k)
    raise SystemExit(f"kid {kid} is not in {jku}")


verify = create_signature_verifier(key_provider, ["ES256", "RS256"])
for url in sys.argv[1:]:
    raw = fetch(url)
    card = json_format.ParseDict(raw, AgentCard())
    try:
        validate_proto_required_fields(card)
    except Exception as e:  # the SDK's InvalidParamsError, with the fields in .data
        raise SystemExit(f"{url}: REQUIRED fields missing or empty: {getattr(e, 'data', e)}")
    verify(card)
    tampered = json_format.ParseDict(raw, AgentCard())
    tampered.name = tampered.name + " (changed)"
    try:
        verify(tampered)
    except InvalidSignaturesError:
        pass
    else:
        raise SystemExit(f"{url}: the verifier accepted a changed card")
    print(f"ok {url} {used[-1]}")
