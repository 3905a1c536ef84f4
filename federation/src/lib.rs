//! Federation with partner identity providers — lands with the federation issue: JOSE
//! verification against partner key sets, the one guarded outbound HTTP client (SSRF-safe), JWKS
//! fetching and caching, partners and trust anchors, and libp2p gossip of signed trust anchors
//! (feature `gossip`). Empty until then, on purpose: the node does not fetch anything yet.
