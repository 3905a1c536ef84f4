//! Tenancy records: usage counters (fixed-size binary, added to by the metering flush),
//! processed billing events and organization memberships (prefixes 0xA0–0xA7).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::keys;
use crate::records::Record;
use crate::store::Store;
use crate::tx::Tx;

const USAGE_VERSION: u8 = 1;
const USAGE_LEN: usize = 1 + 5 * 8;

/// Usage counters of one (organization or agent, period) bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Access tokens issued (token endpoint, token exchange, delegation redemption).
    pub tokens: u64,
    /// Authenticated API calls.
    pub api_calls: u64,
    /// Agents registered.
    pub agents: u64,
    /// Credentials generated.
    pub credentials: u64,
    /// Latest activity in the bucket, ms since the epoch (0: none).
    pub last_active_ms: u64,
}

impl Usage {
    /// Adds `d` to `self` (the latest activity is the later one).
    pub fn add(&mut self, d: &Usage) {
        self.tokens = self.tokens.saturating_add(d.tokens);
        self.api_calls = self.api_calls.saturating_add(d.api_calls);
        self.agents = self.agents.saturating_add(d.agents);
        self.credentials = self.credentials.saturating_add(d.credentials);
        self.last_active_ms = self.last_active_ms.max(d.last_active_ms);
    }

    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        self.tokens == 0 && self.api_calls == 0 && self.agents == 0 && self.credentials == 0
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(USAGE_LEN);
        out.push(USAGE_VERSION);
        for v in [
            self.tokens,
            self.api_calls,
            self.agents,
            self.credentials,
            self.last_active_ms,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(key: &[u8], b: &[u8]) -> Result<Usage, StoreError> {
        if b.len() != USAGE_LEN || b[0] != USAGE_VERSION {
            return Err(StoreError::Decode {
                key: hex::encode(key),
                reason: format!("usage record of {} bytes", b.len()),
            });
        }
        let at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[1 + i * 8..9 + i * 8]);
            u64::from_be_bytes(a)
        };
        Ok(Usage {
            tokens: at(0),
            api_calls: at(1),
            agents: at(2),
            credentials: at(3),
            last_active_ms: at(4),
        })
    }
}

/// A processed billing event (so that a replay changes nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingEvent {
    /// The provider's event type.
    pub kind: String,
    /// When it was processed, ms.
    pub processed_at: i64,
}

impl Record for BillingEvent {
    const VERSION: u8 = 1;
}

/// An agent's membership of its organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Membership id.
    pub id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// The agent.
    pub agent_id: Uuid,
    /// `member` or `admin`.
    pub role: String,
    /// When it was added, ms.
    pub joined_at: i64,
}

impl Record for Member {
    const VERSION: u8 = 1;
}

impl Tx<'_> {
    /// Adds `delta` to the usage bucket at `key` (a key from `keys::usage_*`).
    pub fn add_usage(&mut self, key: Vec<u8>, delta: &Usage) -> Result<(), StoreError> {
        let mut u = match self.get_raw(&key)? {
            Some(b) => Usage::decode(&key, &b)?,
            None => Usage::default(),
        };
        u.add(delta);
        self.put_bytes(key, u.encode());
        Ok(())
    }

    /// The usage bucket at `key` as this job sees it.
    pub fn get_usage(&self, key: &[u8]) -> Result<Usage, StoreError> {
        match self.get_raw(key)? {
            Some(b) => Usage::decode(key, &b),
            None => Ok(Usage::default()),
        }
    }

    /// Whether billing event `id` was processed.
    pub fn billing_event_seen(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.get_raw(&keys::billing_event(id))?.is_some())
    }

    /// Records billing event `id` as processed.
    pub fn put_billing_event(&mut self, id: &str, e: &BillingEvent) {
        self.put(keys::billing_event(id), e)
    }

    /// A membership.
    pub fn get_member(&self, org: &Uuid, agent: &Uuid) -> Result<Option<Member>, StoreError> {
        self.get(&keys::member(org, agent))
    }

    /// Stores a membership.
    pub fn put_member(&mut self, m: &Member) {
        self.put(keys::member(&m.org_id, &m.agent_id), m)
    }

    /// Removes a membership.
    pub fn delete_member(&mut self, org: &Uuid, agent: &Uuid) {
        self.delete(keys::member(org, agent))
    }
}

impl Store {
    /// The usage bucket at `key`.
    pub fn get_usage(&self, key: &[u8]) -> Result<Usage, StoreError> {
        match self.engine().get(key)? {
            Some(b) => Usage::decode(key, &b),
            None => Ok(Usage::default()),
        }
    }

    /// Every usage bucket with `start <= key < end`, in key order.
    pub fn usage_range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
    ) -> Result<Vec<(Vec<u8>, Usage)>, StoreError> {
        let mut out = Vec::new();
        self.scan_range(start, end, false, |k, v| {
            out.push((k.to_vec(), Usage::decode(k, v)?));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Whether billing event `id` was processed.
    pub fn billing_event_seen(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.engine().get(&keys::billing_event(id))?.is_some())
    }

    /// An organization's memberships, by agent id.
    pub fn list_members(&self, org: &Uuid) -> Result<Vec<Member>, StoreError> {
        let (start, end) = keys::prefix_range(&keys::member_prefix(org));
        let mut out = Vec::new();
        self.scan_range(start, end, false, |k, v| {
            out.push(crate::records::decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// A membership.
    pub fn get_member(&self, org: &Uuid, agent: &Uuid) -> Result<Option<Member>, StoreError> {
        self.get(&keys::member(org, agent))
    }

    /// Every agent of an organization (any status), oldest first.
    pub fn org_agents(&self, org: &Uuid) -> Result<Vec<crate::records::Agent>, StoreError> {
        let (start, end) = keys::prefix_range(&keys::agent_by_org_prefix(org));
        let mut ids = Vec::new();
        self.scan_range(start, end, false, |k, _| {
            ids.extend(keys::uuid_suffix(k));
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.get_agent(&id)?);
        }
        Ok(out)
    }

    /// Number of non-decommissioned agents of an organization.
    pub fn org_agent_count(&self, org: &Uuid) -> Result<u64, StoreError> {
        Ok(self.get::<u64>(&keys::org_agent_count(org))?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_round_trips_and_adds() {
        let mut u = Usage {
            tokens: 3,
            api_calls: 5,
            agents: 1,
            credentials: 2,
            last_active_ms: 10,
        };
        let k = keys::usage_org_day(&Uuid::nil(), 1);
        assert_eq!(Usage::decode(&k, &u.encode()).unwrap(), u);
        u.add(&Usage {
            tokens: 1,
            last_active_ms: 4,
            ..Usage::default()
        });
        assert_eq!((u.tokens, u.last_active_ms), (4, 10));
        assert!(Usage::decode(&k, &[1, 2]).is_err());
    }
}
