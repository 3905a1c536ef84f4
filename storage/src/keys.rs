//! Every key the store uses is built here, and only here.
//!
//! One ordered key space; the first byte names the table. Integers are big-endian so that byte
//! order equals numeric order (sequence numbers, creation times). Table bytes are never reused.
//! A string that is followed by more key parts is length-prefixed, so that one value can never be
//! a prefix of another's key (`a` vs `ab`).

use uuid::Uuid;

use crate::records::NewAuditEntry;

const T_META: u8 = 0x00;
const T_ORG: u8 = 0x01;
const T_ORG_SLUG: u8 = 0x02;
const T_ORG_BY_TIME: u8 = 0x03;
const T_ORG_AGENT_COUNT: u8 = 0x04;
const T_AGENT: u8 = 0x10;
const T_AGENT_BY_ORG: u8 = 0x11;
/// Schema 1's node-wide email index (lower-cased ASCII). Only read and deleted by the migration
/// to schema 2; never written again, and the byte is never reused.
const T_AGENT_EMAIL_V1: u8 = 0x12;
const T_AGENT_EMAIL: u8 = 0x13;
/// Agent id -> its position in the node's Bitstring Status List (u64, allocated once).
const T_AGENT_STATUS_INDEX: u8 = 0x14;
/// Status-list position (u64 big-endian) -> agent id: the list is rendered by range.
const T_STATUS_INDEX_AGENT: u8 = 0x15;
const T_CRED: u8 = 0x20;
const T_CRED_BY_AGENT: u8 = 0x21;
const T_SIGNING_KEY: u8 = 0x30;
const T_AUDIT: u8 = 0x40;
const T_AUDIT_BY_ORG: u8 = 0x41;
const T_AUDIT_BY_ACTION: u8 = 0x42;
const T_AUDIT_BY_ACTOR: u8 = 0x43;
const T_AUDIT_BY_TARGET: u8 = 0x44;
const T_AUDIT_BY_TIME: u8 = 0x45;
const T_AGENT_KEY: u8 = 0x50;
const T_REVOKED_TOKEN: u8 = 0x60;
const T_ASSERTION_JTI: u8 = 0x61;
const T_PARTNER: u8 = 0x70;
const T_PARTNER_ISSUER: u8 = 0x71;
const T_POLICY: u8 = 0x72;
const T_POLICY_BY_ORG: u8 = 0x73;
const T_POLICY_BY_ISSUER: u8 = 0x74;
const T_ANCHOR: u8 = 0x75;
const T_DELEGATION: u8 = 0x80;
const T_DELEGATION_BY_AGENT: u8 = 0x81;
// Webhooks (0x90-0x97): subscriptions, their organization index, deliveries, the pending queue
// (per subscription, by next-attempt time) and the delivery log (per subscription, by creation).
const T_WEBHOOK: u8 = 0x90;
const T_WEBHOOK_BY_ORG: u8 = 0x91;
const T_WEBHOOK_DELIVERY: u8 = 0x92;
const T_WEBHOOK_PENDING: u8 = 0x93;
const T_WEBHOOK_LOG: u8 = 0x94;
// Tenancy (usage metering, billing, members): 0xA0–0xA7.
const T_USAGE_ORG_HOUR: u8 = 0xA0;
const T_USAGE_ORG_DAY: u8 = 0xA1;
const T_USAGE_ORG_MONTH: u8 = 0xA2;
const T_USAGE_AGENT_MONTH: u8 = 0xA3;
const T_BILLING_EVENT: u8 = 0xA4;
const T_MEMBER: u8 = 0xA5;

fn key(table: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(table);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The half-open range `[prefix, next(prefix))` of every key starting with `prefix`.
pub fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let start = prefix.to_vec();
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (start, end);
        }
    }
    // The prefix was all 0xff: nothing sorts after it within one byte of table space.
    (start, vec![0xff; prefix.len() + 1])
}

/// The status-list position of agent `id`.
pub fn agent_status_index(id: &Uuid) -> Vec<u8> {
    key(T_AGENT_STATUS_INDEX, &[id.as_bytes()])
}

/// The agent at status-list position `index`.
pub fn status_index_agent(index: u64) -> Vec<u8> {
    key(T_STATUS_INDEX_AGENT, &[&index.to_be_bytes()])
}

/// A federation partner by id.
pub fn partner(id: &Uuid) -> Vec<u8> {
    key(T_PARTNER, &[id.as_bytes()])
}

/// The trust anchor of `origin` about `issuer` (a DID holds no NUL byte).
pub fn trust_anchor(origin: &str, issuer: &str) -> Vec<u8> {
    key(T_ANCHOR, &[origin.as_bytes(), b"\0", issuer.as_bytes()])
}

/// Prefix of every [`trust_anchor`].
pub fn trust_anchor_prefix() -> Vec<u8> {
    key(T_ANCHOR, &[])
}

/// Prefix of [`partner`].
pub fn partner_prefix() -> Vec<u8> {
    vec![T_PARTNER]
}

/// Unique index: partner issuer (exact string) -> id.
pub fn partner_issuer(issuer: &str) -> Vec<u8> {
    key(T_PARTNER_ISSUER, &[issuer.as_bytes()])
}

/// A trust policy by id.
pub fn trust_policy(id: &Uuid) -> Vec<u8> {
    key(T_POLICY, &[id.as_bytes()])
}

/// Index: an organization's trust policies.
pub fn trust_policy_by_org(org: &Uuid, id: &Uuid) -> Vec<u8> {
    key(T_POLICY_BY_ORG, &[org.as_bytes(), id.as_bytes()])
}

/// Prefix of [`trust_policy_by_org`].
pub fn trust_policy_by_org_prefix(org: &Uuid) -> Vec<u8> {
    key(T_POLICY_BY_ORG, &[org.as_bytes()])
}

/// Index: trust policies by subject-token issuer (the issuer, a NUL, the id).
pub fn trust_policy_by_issuer(issuer: &str, id: &Uuid) -> Vec<u8> {
    key(
        T_POLICY_BY_ISSUER,
        &[issuer.as_bytes(), &[0], id.as_bytes()],
    )
}

/// Prefix of [`trust_policy_by_issuer`].
pub fn trust_policy_by_issuer_prefix(issuer: &str) -> Vec<u8> {
    key(T_POLICY_BY_ISSUER, &[issuer.as_bytes(), &[0]])
}

/// A `meta` record (schema version, audit head, bootstrap marker).
pub fn meta(name: &str) -> Vec<u8> {
    key(T_META, &[name.as_bytes()])
}

/// An organization by id.
pub fn org(id: &Uuid) -> Vec<u8> {
    key(T_ORG, &[id.as_bytes()])
}

/// Unique index: organization slug -> id.
pub fn org_slug(slug: &str) -> Vec<u8> {
    key(T_ORG_SLUG, &[slug.as_bytes()])
}

/// Index of organizations by creation time (for newest-first listing).
pub fn org_by_time(created_ms: i64, id: &Uuid) -> Vec<u8> {
    key(T_ORG_BY_TIME, &[&ms_bytes(created_ms), id.as_bytes()])
}

/// Prefix of [`org_by_time`].
pub fn org_by_time_prefix() -> Vec<u8> {
    vec![T_ORG_BY_TIME]
}

/// Number of non-decommissioned agents of an organization (enforces `maxAgents`).
pub fn org_agent_count(org: &Uuid) -> Vec<u8> {
    key(T_ORG_AGENT_COUNT, &[org.as_bytes()])
}

/// An agent by id.
pub fn agent(id: &Uuid) -> Vec<u8> {
    key(T_AGENT, &[id.as_bytes()])
}

/// Index of an organization's agents by creation time.
pub fn agent_by_org(org: &Uuid, created_ms: i64, id: &Uuid) -> Vec<u8> {
    key(
        T_AGENT_BY_ORG,
        &[org.as_bytes(), &ms_bytes(created_ms), id.as_bytes()],
    )
}

/// Prefix of [`agent_by_org`] for one organization.
pub fn agent_by_org_prefix(org: &Uuid) -> Vec<u8> {
    key(T_AGENT_BY_ORG, &[org.as_bytes()])
}

/// Prefix of every [`agent`].
pub fn agent_prefix() -> Vec<u8> {
    vec![T_AGENT]
}

/// Unique index: (organization, lower-cased email) -> agent id. Emails are unique per
/// organization, compared after Unicode lower-casing (`É` and `é` are the same email).
pub fn agent_email(org: &Uuid, email: &str) -> Vec<u8> {
    key(
        T_AGENT_EMAIL,
        &[org.as_bytes(), email.to_lowercase().as_bytes()],
    )
}

/// Prefix of every [`agent_email`] of one organization.
pub fn agent_email_prefix(org: &Uuid) -> Vec<u8> {
    key(T_AGENT_EMAIL, &[org.as_bytes()])
}

/// Schema 1's node-wide email index key, exactly as schema 1 wrote it: the tests of the
/// migration build schema 1 stores with it (the migration itself only needs the prefix).
#[cfg(test)]
pub(crate) fn agent_email_v1(email: &str) -> Vec<u8> {
    key(T_AGENT_EMAIL_V1, &[email.to_ascii_lowercase().as_bytes()])
}

/// Prefix of every schema 1 email index key.
pub(crate) fn agent_email_v1_prefix() -> Vec<u8> {
    vec![T_AGENT_EMAIL_V1]
}

/// A credential by id.
pub fn credential(id: &Uuid) -> Vec<u8> {
    key(T_CRED, &[id.as_bytes()])
}

/// Index of an agent's credentials.
pub fn credential_by_agent(agent: &Uuid, id: &Uuid) -> Vec<u8> {
    key(T_CRED_BY_AGENT, &[agent.as_bytes(), id.as_bytes()])
}

/// Prefix of [`credential_by_agent`] for one agent.
pub fn credential_by_agent_prefix(agent: &Uuid) -> Vec<u8> {
    key(T_CRED_BY_AGENT, &[agent.as_bytes()])
}

/// A node signing key by `kid`.
pub fn signing_key(kid: &str) -> Vec<u8> {
    key(T_SIGNING_KEY, &[kid.as_bytes()])
}

/// Prefix of [`signing_key`].
pub fn signing_key_prefix() -> Vec<u8> {
    vec![T_SIGNING_KEY]
}

/// An audit entry by sequence number.
pub fn audit(seq: u64) -> Vec<u8> {
    key(T_AUDIT, &[&seq.to_be_bytes()])
}

/// Prefix of [`audit`].
pub fn audit_prefix() -> Vec<u8> {
    vec![T_AUDIT]
}

/// Index of an organization's audit entries by sequence number.
pub fn audit_by_org(org: &Uuid, seq: u64) -> Vec<u8> {
    key(T_AUDIT_BY_ORG, &[org.as_bytes(), &seq.to_be_bytes()])
}

/// Prefix of [`audit_by_org`] for one organization.
pub fn audit_by_org_prefix(org: &Uuid) -> Vec<u8> {
    key(T_AUDIT_BY_ORG, &[org.as_bytes()])
}

/// Index of an organization's audit entries by exact action, then sequence number.
pub fn audit_by_action(org: &Uuid, action: &str, seq: u64) -> Vec<u8> {
    audit_by_string(T_AUDIT_BY_ACTION, org, action, seq)
}

/// Prefix of [`audit_by_action`] for one organization and action (no other action's keys).
pub fn audit_by_action_prefix(org: &Uuid, action: &str) -> Vec<u8> {
    audit_by_string_prefix(T_AUDIT_BY_ACTION, org, action)
}

/// Index of an organization's audit entries by exact actor, then sequence number.
pub fn audit_by_actor(org: &Uuid, actor: &str, seq: u64) -> Vec<u8> {
    audit_by_string(T_AUDIT_BY_ACTOR, org, actor, seq)
}

/// Prefix of [`audit_by_actor`] for one organization and actor (no other actor's keys).
pub fn audit_by_actor_prefix(org: &Uuid, actor: &str) -> Vec<u8> {
    audit_by_string_prefix(T_AUDIT_BY_ACTOR, org, actor)
}

/// Index of an organization's audit entries by exact target, then sequence number.
pub fn audit_by_target(org: &Uuid, target: &str, seq: u64) -> Vec<u8> {
    audit_by_string(T_AUDIT_BY_TARGET, org, target, seq)
}

/// Prefix of [`audit_by_target`] for one organization and target (no other target's keys).
pub fn audit_by_target_prefix(org: &Uuid, target: &str) -> Vec<u8> {
    audit_by_string_prefix(T_AUDIT_BY_TARGET, org, target)
}

/// Index of an organization's audit entries by time (ms, any `i64`), then sequence number.
pub fn audit_by_time(org: &Uuid, time_ms: i64, seq: u64) -> Vec<u8> {
    key(
        T_AUDIT_BY_TIME,
        &[org.as_bytes(), &signed_bytes(time_ms), &seq.to_be_bytes()],
    )
}

/// Prefix of [`audit_by_time`] for one organization.
pub fn audit_by_time_prefix(org: &Uuid) -> Vec<u8> {
    key(T_AUDIT_BY_TIME, &[org.as_bytes()])
}

/// The four secondary index keys of audit entry `seq` (action, actor, target, time), written
/// with the entry and by the schema 2 migration. The values are empty: the key says it all.
pub(crate) fn audit_index_keys(body: &NewAuditEntry, seq: u64) -> [Vec<u8>; 4] {
    let org = &body.org_id;
    [
        audit_by_action(org, &body.action, seq),
        audit_by_actor(org, &body.actor, seq),
        audit_by_target(org, &body.target, seq),
        audit_by_time(org, body.time, seq),
    ]
}

fn audit_by_string(table: u8, org: &Uuid, value: &str, seq: u64) -> Vec<u8> {
    let mut k = audit_by_string_prefix(table, org, value);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn audit_by_string_prefix(table: u8, org: &Uuid, value: &str) -> Vec<u8> {
    // The length in front makes the prefix of one value never a prefix of another value's keys.
    // A string longer than 4 GiB cannot reach the store (request bodies are capped far below).
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes();
    key(table, &[org.as_bytes(), &len, value.as_bytes()])
}

/// A public key registered by an agent, by agent and `kid`.
pub fn agent_key(agent: &Uuid, kid: &str) -> Vec<u8> {
    key(T_AGENT_KEY, &[agent.as_bytes(), kid.as_bytes()])
}

/// Prefix of [`agent_key`] for one agent.
pub fn agent_key_prefix(agent: &Uuid) -> Vec<u8> {
    key(T_AGENT_KEY, &[agent.as_bytes()])
}

/// A revoked access token, by `jti`.
pub fn revoked_token(jti: &str) -> Vec<u8> {
    key(T_REVOKED_TOKEN, &[jti.as_bytes()])
}

/// A client assertion `jti` already used by a client (replay protection), by client and `jti`.
/// The client id is length-prefixed so that no (client, jti) pair can collide with another.
pub fn assertion_jti(client: &str, jti: &str) -> Vec<u8> {
    let len = (client.len().min(u16::MAX as usize) as u16).to_be_bytes();
    key(T_ASSERTION_JTI, &[&len, client.as_bytes(), jti.as_bytes()])
}

/// Prefix of every [`assertion_jti`] key.
pub fn assertion_jti_prefix() -> Vec<u8> {
    vec![T_ASSERTION_JTI]
}

/// A delegation link (agent-to-agent delegation), by chain id.
pub fn delegation(id: &Uuid) -> Vec<u8> {
    key(T_DELEGATION, &[id.as_bytes()])
}

/// Prefix of every [`delegation`] key.
pub fn delegation_prefix() -> Vec<u8> {
    vec![T_DELEGATION]
}

/// Index of the delegations an agent gave or received, by agent and chain id.
pub fn delegation_by_agent(agent: &Uuid, id: &Uuid) -> Vec<u8> {
    key(T_DELEGATION_BY_AGENT, &[agent.as_bytes(), id.as_bytes()])
}

/// Prefix of [`delegation_by_agent`] for one agent.
pub fn delegation_by_agent_prefix(agent: &Uuid) -> Vec<u8> {
    key(T_DELEGATION_BY_AGENT, &[agent.as_bytes()])
}

/// Prefix of every [`revoked_token`] key.
pub fn revoked_token_prefix() -> Vec<u8> {
    vec![T_REVOKED_TOKEN]
}

/// The sequence number at the end of an audit key or audit index key.
pub fn seq_suffix(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The UUID at the end of an index key.
pub fn uuid_suffix(key: &[u8]) -> Option<Uuid> {
    let tail: [u8; 16] = key.get(key.len().checked_sub(16)?..)?.try_into().ok()?;
    Some(Uuid::from_bytes(tail))
}

// Creation times before 1970 do not occur; clamp so the byte order stays numeric.
fn ms_bytes(ms: i64) -> [u8; 8] {
    (ms.max(0) as u64).to_be_bytes()
}

// Big-endian with the sign bit flipped: byte order equals numeric order over all of `i64`, so a
// time range maps to a key range even for times a caller gave before 1970.
fn signed_bytes(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Usage of an organization in one UTC hour (`hour`: hours since the epoch).
pub fn usage_org_hour(org: &Uuid, hour: u64) -> Vec<u8> {
    key(T_USAGE_ORG_HOUR, &[org.as_bytes(), &hour.to_be_bytes()])
}

/// Prefix of every [`usage_org_hour`] of one organization.
pub fn usage_org_hour_prefix(org: &Uuid) -> Vec<u8> {
    key(T_USAGE_ORG_HOUR, &[org.as_bytes()])
}

/// Usage of an organization in one UTC day (`day`: days since the epoch).
pub fn usage_org_day(org: &Uuid, day: u64) -> Vec<u8> {
    key(T_USAGE_ORG_DAY, &[org.as_bytes(), &day.to_be_bytes()])
}

/// Usage of an organization in one calendar month (`month`: year × 12 + month − 1).
pub fn usage_org_month(org: &Uuid, month: u64) -> Vec<u8> {
    key(T_USAGE_ORG_MONTH, &[org.as_bytes(), &month.to_be_bytes()])
}

/// Usage of one agent in one calendar month.
pub fn usage_agent_month(org: &Uuid, month: u64, agent: &Uuid) -> Vec<u8> {
    key(
        T_USAGE_AGENT_MONTH,
        &[org.as_bytes(), &month.to_be_bytes(), agent.as_bytes()],
    )
}

/// Prefix of every [`usage_agent_month`] of one organization and month.
pub fn usage_agent_month_prefix(org: &Uuid, month: u64) -> Vec<u8> {
    key(T_USAGE_AGENT_MONTH, &[org.as_bytes(), &month.to_be_bytes()])
}

/// A processed billing (Stripe) event, by its id.
pub fn billing_event(id: &str) -> Vec<u8> {
    key(T_BILLING_EVENT, &[id.as_bytes()])
}

/// An organization membership (organization, agent).
pub fn member(org: &Uuid, agent: &Uuid) -> Vec<u8> {
    key(T_MEMBER, &[org.as_bytes(), agent.as_bytes()])
}

/// Prefix of every [`member`] of one organization.
pub fn member_prefix(org: &Uuid) -> Vec<u8> {
    key(T_MEMBER, &[org.as_bytes()])
}

/// A webhook subscription by id.
pub fn webhook(id: &Uuid) -> Vec<u8> {
    key(T_WEBHOOK, &[id.as_bytes()])
}

/// Prefix of every [`webhook`].
pub fn webhook_prefix() -> Vec<u8> {
    vec![T_WEBHOOK]
}

/// Index: an organization's webhook subscriptions.
pub fn webhook_by_org(org: &Uuid, id: &Uuid) -> Vec<u8> {
    key(T_WEBHOOK_BY_ORG, &[org.as_bytes(), id.as_bytes()])
}

/// Prefix of [`webhook_by_org`] for one organization.
pub fn webhook_by_org_prefix(org: &Uuid) -> Vec<u8> {
    key(T_WEBHOOK_BY_ORG, &[org.as_bytes()])
}

/// A webhook delivery by id.
pub fn webhook_delivery(id: &Uuid) -> Vec<u8> {
    key(T_WEBHOOK_DELIVERY, &[id.as_bytes()])
}

/// The pending queue: a delivery of subscription `sub` due at `due_ms`. Ordered per
/// subscription by due time, so the worker reads each subscription's due deliveries as a range.
pub fn webhook_pending(sub: &Uuid, due_ms: i64, delivery: &Uuid) -> Vec<u8> {
    key(
        T_WEBHOOK_PENDING,
        &[sub.as_bytes(), &ms_bytes(due_ms), delivery.as_bytes()],
    )
}

/// Prefix of [`webhook_pending`] for one subscription.
pub fn webhook_pending_prefix(sub: &Uuid) -> Vec<u8> {
    key(T_WEBHOOK_PENDING, &[sub.as_bytes()])
}

/// Prefix of every [`webhook_pending`].
pub fn webhook_pending_all() -> Vec<u8> {
    vec![T_WEBHOOK_PENDING]
}

/// The first key of subscription `sub`'s pending queue that is due after `ms`.
pub fn webhook_pending_after(sub: &Uuid, ms: i64) -> Vec<u8> {
    key(
        T_WEBHOOK_PENDING,
        &[sub.as_bytes(), &ms_bytes(ms.saturating_add(1))],
    )
}

/// The due time of a [`webhook_pending`] key.
pub fn webhook_pending_due(key: &[u8]) -> Option<i64> {
    let b: [u8; 8] = key.get(17..25)?.try_into().ok()?;
    i64::try_from(u64::from_be_bytes(b)).ok()
}

/// The delivery log of a subscription, by creation time (newest first by reverse scan).
pub fn webhook_log(sub: &Uuid, created_ms: i64, delivery: &Uuid) -> Vec<u8> {
    key(
        T_WEBHOOK_LOG,
        &[sub.as_bytes(), &ms_bytes(created_ms), delivery.as_bytes()],
    )
}

/// Prefix of [`webhook_log`] for one subscription.
pub fn webhook_log_prefix(sub: &Uuid) -> Vec<u8> {
    key(T_WEBHOOK_LOG, &[sub.as_bytes()])
}

/// What a key holds the record of, when it is an organization or an agent (shared stores tell
/// the other nodes which records a batch changed, see [`crate::SharedChanges`]).
pub(crate) fn record_of(key: &[u8]) -> Option<crate::Changed> {
    let (table, rest) = key.split_first()?;
    let id = Uuid::from_slice(rest).ok()?;
    match *table {
        T_ORG => Some(crate::Changed::Org(id)),
        T_AGENT => Some(crate::Changed::Agent(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_range_carries() {
        assert_eq!(prefix_range(&[1, 2]), (vec![1, 2], vec![1, 3]));
        assert_eq!(prefix_range(&[1, 0xff]), (vec![1, 0xff], vec![2]));
    }

    proptest! {
        #[test]
        fn audit_keys_sort_numerically(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), audit(a).cmp(&audit(b)));
            prop_assert_eq!(seq_suffix(&audit(a)), Some(a));
        }

        #[test]
        fn audit_time_keys_sort_numerically(a in any::<i64>(), b in any::<i64>(), s in any::<u64>()) {
            let org = Uuid::from_u128(7);
            prop_assert_eq!(a.cmp(&b), audit_by_time(&org, a, s).cmp(&audit_by_time(&org, b, s)));
            prop_assert_eq!(seq_suffix(&audit_by_time(&org, a, s)), Some(s));
        }

        /// A string index prefix covers exactly the keys of that one value: a value that is a
        /// prefix of another (`a`, `ab`) or contains a NUL never leaks into its range.
        #[test]
        fn audit_string_index_prefixes_do_not_collide(
            a in "[a\\x00b]{0,4}", b in "[a\\x00b]{0,4}", s in any::<u64>(),
        ) {
            let org = Uuid::from_u128(7);
            let (start, end) = prefix_range(&audit_by_action_prefix(&org, &a));
            let k = audit_by_action(&org, &b, s);
            prop_assert_eq!(k >= start && k < end, a == b);
            prop_assert_eq!(seq_suffix(&k), Some(s));
        }

        /// Email keys of one organization never fall in another organization's range, and
        /// every case of one email is one key.
        #[test]
        fn email_keys_are_per_org_and_case_insensitive(email in "[a-zA-ZéÉøØ@.]{1,12}") {
            let (o1, o2) = (Uuid::from_u128(1), Uuid::from_u128(2));
            let (start, end) = prefix_range(&agent_email_prefix(&o1));
            let k = agent_email(&o2, &email);
            prop_assert!(!(k >= start && k < end));
            prop_assert_eq!(agent_email(&o1, &email), agent_email(&o1, &email.to_uppercase()));
            prop_assert_eq!(agent_email(&o1, &email), agent_email(&o1, &email.to_lowercase()));
        }

        #[test]
        fn agent_index_keys_stay_in_their_org(ms in 0i64..i64::MAX, id in any::<u128>()) {
            let org = Uuid::from_u128(7);
            let id = Uuid::from_u128(id);
            let k = agent_by_org(&org, ms, &id);
            let (start, end) = prefix_range(&agent_by_org_prefix(&org));
            prop_assert!(k >= start && k < end);
            prop_assert_eq!(uuid_suffix(&k), Some(id));
        }
    }
}
