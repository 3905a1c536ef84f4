//! A cache of what client authentication and token checks read on every request: the agent,
//! its credentials and whether its organization is active.
//!
//! An entry remembers the store's identity generation it was read at, and is used only while the
//! generation is unchanged. The committer bumps the generation after any commit that changes an
//! organization, agent, credential, agent key or revocation, and before it answers the writer —
//! so once a revocation or a decommissioning has been acknowledged, no request that starts
//! afterwards can be served from an older entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use storage::{Agent, AgentKey, Credential, OrgStatus, Store, StoreError};
use uuid::Uuid;

/// Entries kept at most; past it the cache starts over (it refills from the store).
const MAX_ENTRIES: usize = 10_000;

/// What the token endpoint and bearer checks need about one agent.
#[derive(Debug)]
pub(crate) struct ClientEntry {
    generation: u64,
    pub(crate) agent: Agent,
    pub(crate) credentials: Vec<Credential>,
    /// The public keys the agent registered (`private_key_jwt`; tokens issued through one stay
    /// active only while the key does).
    pub(crate) keys: Vec<AgentKey>,
    pub(crate) org_active: bool,
    /// The organization's token epoch (a new one starts at each suspension).
    pub(crate) org_token_epoch: u32,
    /// The organization's tier limits (tokens a month, requests a minute).
    pub(crate) org_limits: crate::app::usage::OrgLimits,
}

impl ClientEntry {
    /// The token epochs in force, `[agent, organization]`: a token is active only if it was
    /// issued in these.
    pub(crate) fn token_epochs(&self) -> [u32; 2] {
        [self.agent.token_epoch, self.org_token_epoch]
    }
}

/// The cache.
pub(crate) struct ClientCache {
    store: Arc<Store>,
    entries: Mutex<HashMap<Uuid, Arc<ClientEntry>>>,
}

impl ClientCache {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        ClientCache {
            store,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The agent `id` with its credentials and organization status, or `None` if there is no
    /// such agent.
    pub(crate) fn get(&self, id: &Uuid) -> Result<Option<Arc<ClientEntry>>, StoreError> {
        let generation = self.store.identity_generation();
        if let Ok(map) = self.entries.lock() {
            if let Some(e) = map.get(id).filter(|e| e.generation == generation) {
                return Ok(Some(e.clone()));
            }
        }
        // Read after taking the generation: if a commit lands meanwhile, the entry is labelled
        // with the older generation and is simply read again next time.
        let Some(agent) = self.store.get_agent(id)? else {
            return Ok(None);
        };
        let credentials = self.store.list_credentials(id)?;
        let keys = self.store.list_agent_keys(id)?;
        let org = self.store.get_org(&agent.org_id)?;
        let org_active = org.as_ref().is_some_and(|o| o.status == OrgStatus::Active);
        let entry = Arc::new(ClientEntry {
            generation,
            agent,
            credentials,
            keys,
            org_active,
            org_token_epoch: org.as_ref().map_or(0, |o| o.token_epoch),
            org_limits: org.as_ref().map_or(
                crate::app::usage::OrgLimits::NONE,
                crate::app::usage::OrgLimits::of,
            ),
        });
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(*id, entry.clone());
        }
        Ok(Some(entry))
    }
}
