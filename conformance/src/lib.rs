//! `agentidp-conformance` — lands with the conformance issue: a runner that checks any identity
//! node over HTTP against the DID Core, did:web, OIDC discovery, OAuth, A2A, OASF and Agent Badge
//! rules, with text, JSON and JUnit reports. Empty until then, on purpose.
