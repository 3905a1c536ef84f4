//! Durable embedded storage for agentidp.
//!
//! The node keeps organizations, agents, credentials, signing keys and a hash-chained audit log in
//! one ordered key-value space. Two embedded engines implement the [`Engine`] trait: redb (the
//! default) and sled (`--store sled`). On top of an engine, [`Store`] runs a single committer thread
//! that applies every write job to an overlay and commits whole batches at once (group commit), so
//! concurrent writers share one flush and a job is acknowledged only after its batch is durable.
//!
//! Keys are built only in [`keys`]; values are versioned ([`records`]); the schema version lives in
//! a `meta` record checked at open.

mod audit;
mod committer;
pub mod copy;
mod engine;
mod error;
pub mod keys;
mod migrate;
#[doc(hidden)]
pub mod pg_cluster;
pub mod pg_engine;
pub mod records;
mod redb_engine;
mod sled_engine;
mod store;
mod tenancy;
mod tx;
mod webhooks;

#[cfg(test)]
mod suite;

pub use audit::{canonical_json, chain_hash, ChainReport, GENESIS_HASH};
pub use committer::{Changed, SharedChanges};
pub use engine::{open_engine, Batch, Engine, EngineKind, KvPair, Write};
pub use error::StoreError;
pub use pg_engine::{PgEngine, PgOptions};
pub use records::{
    Agent, AgentKey, AgentStatus, AnchorStatus, AuditEntry, AuditHead, Credential,
    CredentialStatus, Delegation, DeliveryStatus, Expiring, GossipSource, KeySourceKind, Locator,
    NewAuditEntry, OrgStatus, Organization, Outcome, Partner, PartnerStatus, PlanTier, SigningKey,
    Skill, TrustAnchor, TrustPolicy, WebhookDelivery, WebhookSubscription,
};
pub use store::{AgentFilter, AuditFilter, CommitStats, Store, SCHEMA_VERSION};
pub use tenancy::{BillingEvent, Member, Usage};
pub use tx::Tx;
pub use webhooks::DeliveryPage;
