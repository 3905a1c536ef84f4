//! End-to-end tests: real `agentidp` processes, real data directories, real HTTP on 127.0.0.1.
//! One test binary (one link step) for the whole suite.

mod conformance;
mod connections;
mod console;
mod contract;
mod delegation;
mod did;
mod directory;
mod durability;
mod federation;
mod gossip;
mod hardening;
mod interop;
mod lifecycle;
mod oidc_provider;
mod postgres;
mod resolver;
mod scaffold;
mod security;
mod tenancy;
mod tls;
mod tokens;
mod webhooks;
