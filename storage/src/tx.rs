//! A write job's view of the store: reads see this job's writes, then the batch's, then the engine.
//!
//! Jobs run one after another on the committer thread. A job's writes are kept apart until it
//! returns `Ok`; a job that fails leaves no trace, even though it shares a batch with others.
//!
//! Both overlays are ordered maps, so that a prefix scan can merge them with the engine's ordered
//! keys (see [`Tx::scan_prefix`]): a limit checked inside a job then counts what earlier jobs of
//! the same, not yet committed, batch wrote.

use std::collections::BTreeMap;
use std::ops::Bound;

use uuid::Uuid;

use crate::audit::{chain_hash, GENESIS_HASH};
use crate::committer::Reader;
use crate::engine::KvPair;
use crate::error::StoreError;
use crate::keys;
use crate::records::Delegation;
use crate::records::{
    decode, encode, Agent, AgentKey, AuditEntry, AuditHead, Credential, Expiring, NewAuditEntry,
    Organization, Partner, Record, SigningKey, TrustAnchor, TrustPolicy,
};

/// The next free status-list position (`meta`).
const META_STATUS_NEXT: &str = "status_list_next";

/// Pending writes: `Some` puts, `None` deletes.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The transaction handed to a write job. See [`crate::Store::write`].
pub struct Tx<'a> {
    engine: &'a dyn Reader,
    batch: &'a Overlay,
    op: Overlay,
    identity: bool,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(engine: &'a dyn Reader, batch: &'a Overlay) -> Self {
        Tx {
            engine,
            batch,
            op: Overlay::new(),
            identity: false,
        }
    }

    /// The job's writes, and whether they change what authentication depends on (see
    /// [`crate::Store::identity_generation`]).
    pub(crate) fn into_writes(self) -> (Overlay, bool) {
        (self.op, self.identity)
    }

    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.op.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.batch.get(key) {
            return Ok(v.clone());
        }
        self.engine.get(key)
    }

    pub(crate) fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StoreError> {
        self.get_raw(key)?.map(|v| decode(key, &v)).transpose()
    }

    pub(crate) fn put_bytes(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.op.insert(key, Some(value));
    }

    pub(crate) fn put<R: Record>(&mut self, key: Vec<u8>, record: &R) {
        self.op.insert(key, Some(encode(record)));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.op.insert(key, None);
    }

    /// Up to `limit` live pairs under `prefix`, in key order, as this job sees them: the
    /// engine's data, overlaid by the batch's earlier jobs and then by this job's own writes
    /// (a deletion hides the engine's key).
    ///
    /// Use it to check an invariant (a limit, "at least one admin remains") inside the job that
    /// commits the change: jobs run one at a time and each sees the batch's earlier writes, so
    /// concurrent requests cannot both pass the check.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let (start, end) = keys::prefix_range(prefix);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // The overlays' view of the range: this job's writes override the batch's.
        let range = (Bound::Included(&start), Bound::Excluded(&end));
        let mut overlay: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for (k, v) in self.batch.range::<Vec<u8>, _>(range) {
            overlay.insert(k, v.as_deref());
        }
        for (k, v) in self.op.range::<Vec<u8>, _>(range) {
            overlay.insert(k, v.as_deref());
        }
        let mut pending = overlay.into_iter().peekable();

        // Merge with the engine, chunk by chunk; an overlay key replaces an equal engine key.
        let chunk_size = limit.clamp(1, crate::store::SCAN_CHUNK);
        let mut cursor = start;
        loop {
            let chunk = self.engine.scan(&cursor, &end, false, chunk_size)?;
            let full = chunk.len() == chunk_size;
            if let Some((last, _)) = chunk.last() {
                cursor = last.clone();
                cursor.push(0);
            }
            for (k, v) in chunk {
                // Overlay keys up to this one come first; an equal one replaces it (the overlay
                // holds each key once, so an equal key is the last one taken).
                let mut replaced = false;
                while let Some((ok, ov)) = pending.next_if(|(ok, _)| *ok <= k.as_slice()) {
                    replaced = ok == k.as_slice();
                    if let Some(ov) = ov {
                        out.push((ok.to_vec(), ov.to_vec()));
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
                if !replaced {
                    out.push((k, v));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                break;
            }
        }
        for (k, v) in pending {
            if let Some(v) = v {
                out.push((k.to_vec(), v.to_vec()));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every public key an agent registered, in `kid` order, as this job sees them (its count is
    /// what a per-agent key limit checks).
    pub fn list_agent_keys(&self, agent: &Uuid) -> Result<Vec<AgentKey>, StoreError> {
        self.scan_prefix(&keys::agent_key_prefix(agent), usize::MAX)?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    /// An organization's trust policies, oldest first, as this job sees them.
    pub fn list_trust_policies(&self, org: &Uuid) -> Result<Vec<TrustPolicy>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.scan_prefix(&keys::trust_policy_by_org_prefix(org), usize::MAX)? {
            let id: Uuid = decode(&k, &v)?;
            if let Some(p) = self.get_trust_policy(&id)? {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// How many federation partners exist, as this job sees them.
    pub fn count_partners(&self) -> Result<usize, StoreError> {
        Ok(self.scan_prefix(&keys::partner_prefix(), usize::MAX)?.len())
    }

    /// Every agent of an organization (any status), oldest first, as this job sees them. It
    /// reads every agent of the organization: for rare checks such as "an admin remains".
    pub fn list_org_agents(&self, org: &Uuid) -> Result<Vec<Agent>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.scan_prefix(&keys::agent_by_org_prefix(org), usize::MAX)? {
            if let Some(a) = keys::uuid_suffix(&k)
                .map(|id| self.get_agent(&id))
                .transpose()?
                .flatten()
            {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// A `meta` record.
    pub fn get_meta<R: Record>(&self, name: &str) -> Result<Option<R>, StoreError> {
        self.get(&keys::meta(name))
    }

    /// Writes a `meta` record.
    pub fn put_meta<R: Record>(&mut self, name: &str, value: &R) {
        self.put(keys::meta(name), value)
    }

    /// An organization by id.
    pub fn get_org(&self, id: &Uuid) -> Result<Option<Organization>, StoreError> {
        self.get(&keys::org(id))
    }

    /// The id of the organization with this slug.
    pub fn org_id_by_slug(&self, slug: &str) -> Result<Option<Uuid>, StoreError> {
        self.get(&keys::org_slug(slug))
    }

    /// Writes an organization and its indexes. The slug and creation time are immutable.
    pub fn put_org(&mut self, org: &Organization) {
        self.identity = true;
        self.put(keys::org_slug(&org.slug), &org.id);
        self.put(keys::org_by_time(org.created_at, &org.id), &org.id);
        self.put(keys::org(&org.id), org);
    }

    /// Non-decommissioned agents of an organization.
    pub fn org_agent_count(&self, org: &Uuid) -> Result<u64, StoreError> {
        Ok(self.get(&keys::org_agent_count(org))?.unwrap_or(0))
    }

    /// Sets [`Tx::org_agent_count`].
    pub fn set_org_agent_count(&mut self, org: &Uuid, count: u64) {
        self.put(keys::org_agent_count(org), &count)
    }

    /// An agent by id.
    pub fn get_agent(&self, id: &Uuid) -> Result<Option<Agent>, StoreError> {
        self.get(&keys::agent(id))
    }

    /// The id of the agent of organization `org` with this email (compared after Unicode
    /// lower-casing: `Émile@x` and `émile@x` are one email). Emails are unique per organization;
    /// two organizations may each have an agent with the same email.
    pub fn agent_id_by_email(&self, org: &Uuid, email: &str) -> Result<Option<Uuid>, StoreError> {
        self.get(&keys::agent_email(org, email))
    }

    /// Writes an agent and keeps its indexes (email within its organization, organization
    /// listing) in step. An agent's organization never changes.
    pub fn put_agent(&mut self, agent: &Agent) -> Result<(), StoreError> {
        self.identity = true;
        let email_key = keys::agent_email(&agent.org_id, &agent.email);
        if let Some(old) = self.get_agent(&agent.id)? {
            let old_key = keys::agent_email(&old.org_id, &old.email);
            // Only when the normalized email changed (deleting the key being written would drop
            // the new entry), and only if the entry names this agent: a store migrated from
            // schema 1 may hold two agents whose emails differ only in non-ASCII case, and the
            // other one's entry must survive this one's rename.
            if old_key != email_key && self.get::<Uuid>(&old_key)? == Some(agent.id) {
                self.delete(old_key);
            }
        }
        self.put(email_key, &agent.id);
        self.put(
            keys::agent_by_org(&agent.org_id, agent.created_at, &agent.id),
            &agent.id,
        );
        self.put(keys::agent(&agent.id), agent);
        self.ensure_status_index(&agent.id)?;
        Ok(())
    }

    /// The position of agent `id` in the node's Bitstring Status List, allocating the next free
    /// one (never reused) if it has none yet. [`Tx::put_agent`] calls it, so every agent written
    /// since status lists exist has one; agents of older stores get theirs when next written, or
    /// from a boot pass that calls this for each of them.
    pub fn ensure_status_index(&mut self, id: &Uuid) -> Result<u64, StoreError> {
        if let Some(index) = self.get::<u64>(&keys::agent_status_index(id))? {
            return Ok(index);
        }
        let index: u64 = self.get_meta(META_STATUS_NEXT)?.unwrap_or(0);
        self.put_meta(META_STATUS_NEXT, &(index + 1));
        self.put(keys::agent_status_index(id), &index);
        self.put(keys::status_index_agent(index), id);
        self.identity = true;
        Ok(index)
    }

    /// A federation partner by id.
    pub fn get_partner(&self, id: &Uuid) -> Result<Option<Partner>, StoreError> {
        self.get(&keys::partner(id))
    }

    /// The id of the partner with exactly this issuer.
    pub fn partner_id_by_issuer(&self, issuer: &str) -> Result<Option<Uuid>, StoreError> {
        self.get(&keys::partner_issuer(issuer))
    }

    /// Writes a partner and its issuer index (the issuer is immutable).
    pub fn put_partner(&mut self, partner: &Partner) {
        self.identity = true;
        self.put(keys::partner_issuer(&partner.issuer), &partner.id);
        self.put(keys::partner(&partner.id), partner);
    }

    /// Removes a partner and its issuer index.
    pub fn delete_partner(&mut self, partner: &Partner) {
        self.identity = true;
        self.delete(keys::partner_issuer(&partner.issuer));
        self.delete(keys::partner(&partner.id));
    }

    /// The trust anchor of `origin` about `issuer`.
    pub fn get_trust_anchor(
        &self,
        origin: &str,
        issuer: &str,
    ) -> Result<Option<TrustAnchor>, StoreError> {
        self.get(&keys::trust_anchor(origin, issuer))
    }

    /// Writes a trust anchor (replacing the one of the same origin and issuer).
    pub fn put_trust_anchor(&mut self, anchor: &TrustAnchor) {
        self.put(keys::trust_anchor(&anchor.origin, &anchor.issuer), anchor);
    }

    /// Forgets the trust anchor of `origin` about `issuer`.
    pub fn delete_trust_anchor(&mut self, origin: &str, issuer: &str) {
        self.delete(keys::trust_anchor(origin, issuer));
    }

    /// A trust policy by id.
    pub fn get_trust_policy(&self, id: &Uuid) -> Result<Option<TrustPolicy>, StoreError> {
        self.get(&keys::trust_policy(id))
    }

    /// Writes a trust policy and its indexes (organization, issuer; both immutable).
    pub fn put_trust_policy(&mut self, p: &TrustPolicy) {
        self.identity = true;
        self.put(keys::trust_policy_by_org(&p.org_id, &p.id), &p.id);
        self.put(keys::trust_policy_by_issuer(&p.issuer, &p.id), &p.id);
        self.put(keys::trust_policy(&p.id), p);
    }

    /// Removes a trust policy and its indexes.
    pub fn delete_trust_policy(&mut self, p: &TrustPolicy) {
        self.identity = true;
        self.delete(keys::trust_policy_by_org(&p.org_id, &p.id));
        self.delete(keys::trust_policy_by_issuer(&p.issuer, &p.id));
        self.delete(keys::trust_policy(&p.id));
    }

    /// Whether the access token `jti` was revoked (and the revocation still matters at `now`,
    /// seconds), as this job sees it.
    pub fn is_token_revoked(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .get::<Expiring>(&keys::revoked_token(jti))?
            .is_some_and(|e| e.until >= now))
    }

    /// A delegation link by chain id.
    pub fn get_delegation(&self, id: &Uuid) -> Result<Option<Delegation>, StoreError> {
        self.get(&keys::delegation(id))
    }

    /// Writes a delegation link and its index under each of its agents.
    pub fn put_delegation(&mut self, d: &Delegation) {
        self.identity = true;
        for agent in [d.delegator, d.delegatee, d.principal] {
            self.put(keys::delegation_by_agent(&agent, &d.id), &d.id);
        }
        self.put(keys::delegation(&d.id), d);
    }

    /// A credential by id.
    pub fn get_credential(&self, id: &Uuid) -> Result<Option<Credential>, StoreError> {
        self.get(&keys::credential(id))
    }

    /// Writes a credential and its agent index.
    pub fn put_credential(&mut self, cred: &Credential) {
        self.identity = true;
        self.put(
            keys::credential_by_agent(&cred.agent_id, &cred.id),
            &cred.id,
        );
        self.put(keys::credential(&cred.id), cred);
    }

    /// A node signing key by `kid`.
    pub fn get_signing_key(&self, kid: &str) -> Result<Option<SigningKey>, StoreError> {
        self.get(&keys::signing_key(kid))
    }

    /// Writes a node signing key.
    pub fn put_signing_key(&mut self, key: &SigningKey) {
        // Other nodes of a shared store reload their key ring on an identity change.
        self.identity = true;
        self.put(keys::signing_key(&key.kid), key)
    }

    /// A key an agent registered.
    pub fn get_agent_key(&self, agent: &Uuid, kid: &str) -> Result<Option<AgentKey>, StoreError> {
        self.get(&keys::agent_key(agent, kid))
    }

    /// Registers (or replaces) an agent's public key.
    pub fn put_agent_key(&mut self, key: &AgentKey) {
        self.identity = true;
        self.put(keys::agent_key(&key.agent_id, &key.kid), key)
    }

    /// Removes an agent's public key.
    pub fn delete_agent_key(&mut self, agent: &Uuid, kid: &str) {
        self.identity = true;
        self.delete(keys::agent_key(agent, kid))
    }

    /// Marks an access token revoked until it would have expired anyway.
    pub fn revoke_token(&mut self, jti: &str, until: i64) {
        self.identity = true;
        self.put(keys::revoked_token(jti), &Expiring { until })
    }

    /// Records a client assertion id; returns `false` if it was already recorded and still in
    /// force at `now` (a replay). Atomic: two concurrent uses of one id cannot both succeed.
    pub fn use_assertion_jti(
        &mut self,
        client: &str,
        jti: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let key = keys::assertion_jti(client, jti);
        if let Some(seen) = self.get::<Expiring>(&key)? {
            if seen.until >= now {
                return Ok(false);
            }
        }
        self.put(key, &Expiring { until });
        Ok(true)
    }

    /// Deletes a key found by [`crate::Store::expired`].
    pub fn delete_raw(&mut self, key: Vec<u8>) {
        self.delete(key)
    }

    /// Appends an audit entry, chained to the current head, and returns its sequence number.
    /// It commits with the rest of this job, or not at all, and with it its indexes: by
    /// organization, and within the organization by action, actor, target and time.
    pub fn audit(&mut self, body: NewAuditEntry) -> Result<u64, StoreError> {
        let head: AuditHead = self
            .get_meta(crate::store::META_AUDIT_HEAD)?
            .unwrap_or(AuditHead {
                seq: 0,
                hash: GENESIS_HASH.to_string(),
            });
        let seq = head.seq + 1;
        let hash = chain_hash(&head.hash, seq, &body);
        let org = body.org_id;
        // Blind puts, no reads: this runs once per issued token.
        for index in keys::audit_index_keys(&body, seq) {
            self.op.insert(index, Some(Vec::new()));
        }
        let entry = AuditEntry {
            seq,
            body,
            prev_hash: head.hash,
            hash: hash.clone(),
        };
        self.put(keys::audit(seq), &entry);
        self.put(keys::audit_by_org(&org, seq), &seq);
        self.put_meta(crate::store::META_AUDIT_HEAD, &AuditHead { seq, hash });
        Ok(seq)
    }
}
