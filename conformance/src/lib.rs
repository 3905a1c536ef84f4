//! `agentidp-conformance`: a runner that holds any identity node, over HTTP only, to the
//! standards it claims — did:web, DID Core, OpenID Connect Discovery / RFC 8414 and JWKS, OAuth
//! 2.0 client credentials with RFC 9068 access tokens, A2A v1.0 agent cards signed over RFC 8785
//! (JCS), OASF records and VCDM 2.0 Agent Badges — with text, JSON and JUnit reports.
//!
//! One table of checks ([`CHECKS`]) drives `list`, `run` and the reports: every check has an id,
//! a suite, the spec clause it enforces and a one-line description, and returns
//! [`Outcome::Pass`], [`Outcome::Fail`] or [`Outcome::Skip`].

mod check;
mod ctx;
mod jose;
pub mod report;
mod runner;
mod suites;

pub use check::{Check, CheckFn, CheckFuture, Outcome, Scope, CHECKS, SUITES};
pub use ctx::{Ctx, Fetched, Options};
pub use runner::{run, CheckResult};

#[cfg(test)]
mod testkey;

#[cfg(test)]
mod fake;
