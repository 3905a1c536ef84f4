//! DIDs and what the node says about its agents: the node's and every agent's did:web
//! document, the A2A agent card, the OASF record and the Agent Badge (public), the predecessor's
//! per-agent document and card, DID resolution (tenant-scoped), and badge verification.
//!
//! Status rules ([`Standing`]): a decommissioned agent's DID is deactivated, so every public
//! artifact of it is `Gone` (`AGENT_DECOMMISSIONED`) and its resolution metadata says
//! `deactivated: true`. A suspended agent, or an agent of a suspended organization, keeps its DID
//! document (the keys that signed its past statements stay resolvable), but its card, OASF record
//! and badge — statements that it is in good standing — are `Forbidden` (`AGENT_NOT_ACTIVE`)
//! until it is reactivated. Rendering and its cache are in [`super::artifacts`].

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::artifacts::{self, AgentArtifacts, Rendered, Standing, VC_CONTEXT};
use super::resolver;
use super::{AppState, Caller, DomainError, ErrorCode, Outcome, Scope};
use crate::clock::parse_rfc3339;

/// JSON-LD media type of a DID document (DID Core §6.3): what a resolution result says its
/// document is, and what the document routes answer when asked for it.
pub(crate) const DID_LD_JSON: &str = "application/did+ld+json";
/// Largest badge accepted for verification.
const MAX_BADGE_LEN: usize = 32 * 1024;
/// Clock skew tolerated on a badge's validity window.
const LEEWAY_MS: i64 = 60_000;
/// A VC secured with JOSE (VC-JOSE-COSE §3.1.1), any case.
const BADGE_TYPES: &[&str] = &["vc+jwt"];

fn decommissioned() -> DomainError {
    DomainError::gone(
        ErrorCode::AgentDecommissioned,
        "Agent has been decommissioned — DID Document is no longer active",
    )
}

fn not_active() -> DomainError {
    DomainError::forbidden(
        ErrorCode::AgentNotActive,
        "The agent is suspended; its card, OASF record and badge are withheld until it is reactivated.",
    )
}

/// The artifacts of agent `id` for a public route: not found if unknown, gone if its DID is
/// deactivated.
fn published(state: &AppState, id: &Uuid) -> Outcome<Arc<AgentArtifacts>> {
    let x = state
        .artifacts
        .get(id, &state.keys())?
        .ok_or_else(DomainError::agent_not_found)?;
    if x.standing == Standing::Deactivated {
        return Err(decommissioned());
    }
    Ok(x)
}

/// Like [`published`], and forbidden unless the agent is in good standing (the routes that
/// vouch for it: card, OASF record, badge, the predecessor's card).
fn in_good_standing(state: &AppState, id: &Uuid) -> Outcome<Arc<AgentArtifacts>> {
    let x = published(state, id)?;
    if x.standing != Standing::Active {
        return Err(not_active());
    }
    Ok(x)
}

/// The node's DID document (`did:web:<host>`): its signing keys in force and its services.
pub(crate) fn node_document(state: &AppState) -> Rendered {
    artifacts::node_document(&state.settings, &state.keys(), state.clock.now_ms())
}

/// The node's DID document where did:web puts it when the node's public URL has a path
/// (`https://h/base` is `did:web:h:base`, whose document is `https://h/base/did.json`). Without a
/// path the DID's document is at `/.well-known/did.json` only: not found here.
pub(crate) fn node_document_at_path(state: &AppState) -> Outcome<Rendered> {
    if state.settings.node_did.path().is_empty() {
        return Err(DomainError::not_found(
            ErrorCode::DidDocumentNotHere,
            "This node's DID has no path: its document is at /.well-known/did.json.",
        ));
    }
    Ok(node_document(state))
}

/// An agent's DID document (`did:web:<host>:agents:<uuid>`), also while it is suspended.
pub(crate) fn agent_document(state: &AppState, id: &Uuid) -> Outcome<Rendered> {
    Ok(published(state, id)?.document.clone())
}

fn no_card() -> DomainError {
    DomainError::not_found(
        ErrorCode::AgentCardUnavailable,
        "The agent has no A2A card: A2A requires at least one interface and one skill; add endpoints and skills with PATCH /api/v1/agents/{agentId}. Its badge carries the card and is unavailable too.",
    )
}

/// An agent's signed A2A card; unavailable while the agent lists no endpoint or no skill.
pub(crate) fn agent_card(state: &AppState, id: &Uuid) -> Outcome<Rendered> {
    let x = in_good_standing(state, id)?;
    if !artifacts::has_card(&x.agent) {
        return Err(no_card());
    }
    let (_, r) = x.card(&state.settings)?;
    Ok(r.clone())
}

/// An agent's OASF record; unavailable while the agent lists no skills (OASF needs one).
pub(crate) fn oasf_record(state: &AppState, id: &Uuid) -> Outcome<Rendered> {
    let x = in_good_standing(state, id)?;
    let record = x.oasf(&state.settings)?.cloned();
    record.ok_or_else(|| {
        DomainError::not_found(
            ErrorCode::OasfRecordUnavailable,
            "The agent lists no skills, and an OASF record needs at least one; add skills with PATCH /api/v1/agents/{agentId}.",
        )
    })
}

/// An agent's Agent Badge (a compact JWS), re-issued when the cached one is an hour old.
pub(crate) fn agent_badge(state: &AppState, id: &Uuid) -> Outcome<Rendered> {
    let x = in_good_standing(state, id)?;
    if !artifacts::has_card(&x.agent) {
        return Err(no_card());
    }
    Ok(x.badge(&state.settings, state.clock.now_ms())?)
}

/// The node's status list number `list` (the `credentialStatus` of its badges), whatever the
/// standing of the agents in it; `STATUS_LIST_NOT_FOUND` beyond the positions given out.
pub(crate) fn status_list(state: &AppState, list: u64) -> Outcome<Rendered> {
    state
        .artifacts
        .status_list(list, &state.keys(), state.clock.now_ms())?
        .ok_or_else(|| {
            DomainError::not_found(
                ErrorCode::StatusListNotFound,
                format!("The node has no status list {list}; take the list's URL from a badge's credentialStatus."),
            )
        })
}

/// The predecessor's per-agent DID document (with its `agntcy` extension), also while the
/// agent is suspended.
pub(crate) fn predecessor_document(state: &AppState, id: &Uuid) -> Outcome<Value> {
    let x = published(state, id)?;
    Ok(artifacts::predecessor_document(&x))
}

/// The predecessor's AGNTCY agent card.
pub(crate) fn predecessor_card(state: &AppState, id: &Uuid) -> Outcome<Value> {
    let x = in_good_standing(state, id)?;
    Ok(artifacts::predecessor_card(
        &state.settings,
        &x.agent,
        &x.did,
        state.clock.now_ms(),
    ))
}

/// W3C DID Resolution of one of the caller's organization's agents (`agents:read`): another
/// organization's agent is not found. Answered by the resolver's code
/// ([`resolver::agent_resolution`], [`resolver::result_body`]), so it follows the same rules
/// as `/1.0/identifiers/`: a deactivated DID resolves to its bare identity (no keys, no
/// services) with `deactivated: true`; no `contentType` (DID Core §7.1.2); times without
/// sub-second precision (§7.1.3). The body is the result's JSON.
pub(crate) fn resolve(state: &AppState, caller: &Caller, id: &Uuid) -> Outcome<Vec<u8>> {
    caller.require(Scope::AgentsRead)?;
    let x = state
        .artifacts
        .get(id, &state.keys())?
        .filter(|x| x.agent.org_id == caller.org_id)
        .ok_or_else(DomainError::agent_not_found)?;
    let out = resolver::agent_resolution(state, &x);
    let outcome = match &out {
        Ok(r) if r.metadata.deactivated => "deactivated",
        Ok(_) => "found",
        Err(e) => e.code(),
    };
    state
        .metrics
        .did_resolution(resolver::Source::Local.label(), outcome);
    let r = out.map_err(|_| DomainError::Internal)?;
    Ok(resolver::result_body(
        &Ok(r),
        state.clock.now_ms(),
        &state.settings,
    ))
}

/// What a badge that verified says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerifiedBadge {
    pub(crate) agent_id: Uuid,
    /// The agent's DID (the credential subject).
    pub(crate) did: String,
    /// The node's DID.
    pub(crate) issuer: String,
    pub(crate) valid_from: String,
    pub(crate) valid_until: String,
    /// The A2A card the badge carries.
    pub(crate) card: Value,
}

/// The VC members a badge check reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BadgeClaims {
    #[serde(rename = "@context")]
    context: Vec<String>,
    #[serde(rename = "type")]
    kind: Vec<String>,
    issuer: String,
    valid_from: String,
    valid_until: String,
    credential_subject: BadgeSubject,
}

#[derive(Deserialize)]
struct BadgeSubject {
    id: String,
    badge: String,
}

fn refused(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::unprocessable(code, message)
}

fn signature_invalid() -> DomainError {
    refused(
        ErrorCode::BadgeSignatureInvalid,
        "The badge's signature does not verify.",
    )
}

/// Verifies an Agent Badge issued by this node, now. Every refusal is `Unprocessable` with its
/// `BADGE_*` code.
pub(crate) fn verify_badge(state: &AppState, badge: &str) -> Outcome<VerifiedBadge> {
    let now = state.clock.now_ms();
    // 1-2. A compact JWS (RFC 7515 §7.1) of bounded size, a VC secured with JOSE
    // (`typ: vc+jwt`), one of our signing algorithms, no extensions we would have to
    // understand. The JOSE core checks the header; the claims are a VC, checked below.
    let opts = jose::Options {
        max_len: MAX_BADGE_LEN,
        algs: crate::token::ALGS,
        typ: jose::Typ::IgnoreCase(BADGE_TYPES),
        kid: jose::KidRule::Required,
        issuer: None,
        subject: None,
        audience: None,
        require: &[],
        leeway_secs: LEEWAY_MS / 1000,
        now: now.div_euclid(1000),
    };
    let jws = jose::Jws::parse(badge.trim(), &opts).map_err(|e| match e {
        jose::VerifyError::TypeNotAccepted | jose::VerifyError::CritUnsupported => refused(
            ErrorCode::BadgeUnsupportedType,
            "The JWS header must say typ vc+jwt and carry no crit.",
        ),
        // An algorithm none of our keys has.
        jose::VerifyError::AlgNotAllowed(_) => signature_invalid(),
        _ => refused(
            ErrorCode::BadgeMalformed,
            "The badge is not a compact JWS (three base64url parts, JSON header).",
        ),
    })?;
    // 3. Signed by a verification method of this node's DID, with a key it publishes now.
    let node_did = state.settings.node_did.to_string();
    let kid = jws
        .kid()
        .and_then(|k| k.strip_prefix(node_did.as_str()))
        .and_then(|k| k.strip_prefix('#'))
        .ok_or_else(|| {
            refused(
                ErrorCode::BadgeIssuerUnknown,
                format!("The badge's kid is not a verification method of {node_did}."),
            )
        })?;
    let ring = state.keys();
    let key = ring.key(kid, now).ok_or_else(|| {
        refused(
            ErrorCode::BadgeKeyUnknown,
            "The badge was signed with a key this node no longer publishes.",
        )
    })?;
    // 4. The key's own algorithm, and a signature that verifies.
    jws.verify_with(key).map_err(|_| signature_invalid())?;
    // 5. A VCDM 2.0 AgentBadge issued by this node.
    let c: BadgeClaims = jws
        .payload()
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or_else(|| {
            refused(
                ErrorCode::BadgeMalformed,
                "The badge payload is not an Agent Badge credential.",
            )
        })?;
    if c.context.first().map(String::as_str) != Some(VC_CONTEXT)
        || !c.kind.iter().any(|t| t == "VerifiableCredential")
        || !c.kind.iter().any(|t| t == "AgentBadge")
    {
        return Err(refused(
            ErrorCode::BadgeMalformed,
            "The credential is not a VCDM 2.0 AgentBadge.",
        ));
    }
    if c.issuer != node_did {
        return Err(refused(
            ErrorCode::BadgeIssuerUnknown,
            "The badge's issuer is not this node.",
        ));
    }
    // 6. Within its validity window (VCDM 2.0 §4.9), give or take the leeway.
    let (Some(from), Some(until)) = (parse_rfc3339(&c.valid_from), parse_rfc3339(&c.valid_until))
    else {
        return Err(refused(
            ErrorCode::BadgeMalformed,
            "validFrom and validUntil must be RFC 3339 times.",
        ));
    };
    if from > now + LEEWAY_MS {
        return Err(refused(
            ErrorCode::BadgeNotYetValid,
            "The badge is not valid yet.",
        ));
    }
    if until + LEEWAY_MS <= now {
        return Err(refused(
            ErrorCode::BadgeExpired,
            "The badge has expired; fetch a fresh one.",
        ));
    }
    // 7. About an agent of this node that is still in good standing.
    let agent_id = c
        .credential_subject
        .id
        .strip_prefix(&format!("{node_did}:agents:"))
        .and_then(|id| id.parse::<Uuid>().ok())
        .ok_or_else(|| {
            refused(
                ErrorCode::BadgeSubjectUnknown,
                "The badge's subject is not an agent DID of this node.",
            )
        })?;
    let agent = state.store.get_agent(&agent_id)?.ok_or_else(|| {
        refused(
            ErrorCode::BadgeSubjectUnknown,
            "The badge's subject agent does not exist.",
        )
    })?;
    let org = state.store.get_org(&agent.org_id)?;
    match Standing::of(&agent, org.as_ref()) {
        Standing::Active => {}
        Standing::Deactivated => {
            return Err(refused(
                ErrorCode::BadgeSubjectDeactivated,
                "The badge's subject agent was decommissioned; its DID is deactivated.",
            ))
        }
        Standing::Withheld => {
            return Err(refused(
                ErrorCode::BadgeSubjectNotActive,
                "The badge's subject agent is suspended.",
            ))
        }
    }
    // 8. Carrying a card.
    let card: Value = serde_json::from_str(&c.credential_subject.badge)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            refused(
                ErrorCode::BadgeMalformed,
                "credentialSubject.badge is not a JSON card.",
            )
        })?;
    Ok(VerifiedBadge {
        agent_id,
        did: c.credential_subject.id,
        issuer: c.issuer,
        valid_from: c.valid_from,
        valid_until: c.valid_until,
        card,
    })
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::json;
    use storage::{AgentStatus, OrgStatus};

    use super::*;
    use crate::app::artifacts::fixtures;
    use crate::app::{testing, Actor};
    use crate::clock::rfc3339;
    use did_method::ResolutionResult;

    fn result(body: Vec<u8>) -> ResolutionResult {
        serde_json::from_slice(&body).unwrap()
    }

    /// The kind of a refusal, as the HTTP layer will map it.
    #[derive(Debug, PartialEq)]
    enum Kind {
        NotFound,
        Forbidden,
        Gone,
        Unprocessable,
        Other,
    }

    fn kind(e: DomainError) -> (Kind, ErrorCode) {
        let k = match &e {
            DomainError::NotFound { .. } => Kind::NotFound,
            DomainError::Forbidden { .. } => Kind::Forbidden,
            DomainError::Gone { .. } => Kind::Gone,
            DomainError::Unprocessable { .. } => Kind::Unprocessable,
            _ => Kind::Other,
        };
        (k, e.code())
    }

    type Seen = Vec<(&'static str, Option<(Kind, ErrorCode)>)>;

    /// What every public route of an agent answers, by route.
    fn public_routes(state: &AppState, id: &Uuid) -> Seen {
        vec![
            ("did.json", agent_document(state, id).err().map(kind)),
            ("agent-card", agent_card(state, id).err().map(kind)),
            ("oasf", oasf_record(state, id).err().map(kind)),
            ("badge", agent_badge(state, id).err().map(kind)),
            (
                "legacy did",
                predecessor_document(state, id).err().map(kind),
            ),
            ("legacy card", predecessor_card(state, id).err().map(kind)),
        ]
    }

    /// `ok` routes answer, the others are refused with `refusal`.
    fn expect(ok: &[&'static str], refusal: impl Fn() -> (Kind, ErrorCode)) -> Seen {
        [
            "did.json",
            "agent-card",
            "oasf",
            "badge",
            "legacy did",
            "legacy card",
        ]
        .into_iter()
        .map(|r| (r, (!ok.contains(&r)).then(&refusal)))
        .collect()
    }

    const DOCUMENTS: &[&str] = &["did.json", "legacy did"];
    const ALL: &[&str] = &[
        "did.json",
        "agent-card",
        "oasf",
        "badge",
        "legacy did",
        "legacy card",
    ];

    fn caller(org: &Uuid, scopes: &[Scope]) -> Caller {
        let agent_id = Uuid::new_v4();
        Caller {
            agent_id,
            org_id: *org,
            scopes: scopes.to_vec(),
            token_scopes: scopes.to_vec(),
            actor: Actor {
                id: agent_id.to_string(),
                org: *org,
                client: None,
            },
        }
    }

    #[tokio::test]
    async fn public_artifacts_follow_the_agents_standing() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (agent, key) = fixtures::agent(&state, &org.id, true).await;
        let id = agent.id;
        let not_active = || (Kind::Forbidden, ErrorCode::AgentNotActive);

        // Active: everything is published, and says what it should.
        assert_eq!(public_routes(&state, &id), expect(ALL, not_active));
        let doc: Value =
            serde_json::from_slice(&agent_document(&state, &id).unwrap().body).unwrap();
        assert_eq!(doc["id"], state.agent_did(&id));
        assert_eq!(
            doc["verificationMethod"][0]["id"],
            format!("{}#{}", state.agent_did(&id), key.kid)
        );
        let card: Value = serde_json::from_slice(&agent_card(&state, &id).unwrap().body).unwrap();
        assert_eq!(card["name"], "Resume Screener");
        assert!(card["signatures"][0]["signature"].is_string());
        let record: Value =
            serde_json::from_slice(&oasf_record(&state, &id).unwrap().body).unwrap();
        assert_eq!(record["annotations"]["agentidp.did"], state.agent_did(&id));
        let legacy = predecessor_document(&state, &id).unwrap();
        assert_eq!(legacy["agntcy"]["agentId"], id.to_string());
        for published in [doc.to_string(), card.to_string(), record.to_string()] {
            assert!(!published.contains("never published"), "metadata leaked");
            assert!(!published.contains(&agent.email), "email leaked");
        }

        // Suspended: the documents stay, the statements of good standing are withheld.
        fixtures::set_agent_status(&state, &id, AgentStatus::Suspended).await;
        assert_eq!(public_routes(&state, &id), expect(DOCUMENTS, not_active));

        // The same while the organization is suspended.
        fixtures::set_agent_status(&state, &id, AgentStatus::Active).await;
        assert_eq!(public_routes(&state, &id), expect(ALL, not_active));
        fixtures::set_org_status(&state, &org.id, OrgStatus::Suspended).await;
        assert_eq!(public_routes(&state, &id), expect(DOCUMENTS, not_active));
        fixtures::set_org_status(&state, &org.id, OrgStatus::Active).await;
        assert_eq!(public_routes(&state, &id), expect(ALL, not_active));

        // Decommissioned: the DID is deactivated, everything is gone.
        fixtures::set_agent_status(&state, &id, AgentStatus::Decommissioned).await;
        assert_eq!(
            public_routes(&state, &id),
            expect(&[], || (Kind::Gone, ErrorCode::AgentDecommissioned))
        );

        // Unknown.
        assert_eq!(
            public_routes(&state, &Uuid::new_v4()),
            expect(&[], || (Kind::NotFound, ErrorCode::AgentNotFound))
        );
    }

    #[tokio::test]
    async fn an_agent_without_skills_has_no_oasf_record_card_or_badge() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (agent, _) = fixtures::agent(&state, &org.id, false).await;
        let mut want = expect(ALL, || (Kind::Other, ErrorCode::InternalServerError));
        // A2A requires a skill and an interface: no card, so no badge (it carries the card).
        want[1].1 = Some((Kind::NotFound, ErrorCode::AgentCardUnavailable));
        want[2].1 = Some((Kind::NotFound, ErrorCode::OasfRecordUnavailable));
        want[3].1 = Some((Kind::NotFound, ErrorCode::AgentCardUnavailable));
        assert_eq!(public_routes(&state, &agent.id), want);
        // Its DID document names none of them; the status list is served.
        let x = state
            .artifacts
            .get(&agent.id, &state.keys())
            .unwrap()
            .unwrap();
        let doc: Value = serde_json::from_slice(&x.document.body).unwrap();
        let types: Vec<&str> = doc["service"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["AgentIdP"]);
        assert!(status_list(&state, 0).is_ok());
        // The standing is checked first: a suspended agent's record is withheld, not missing.
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Suspended).await;
        assert_eq!(
            oasf_record(&state, &agent.id).err().map(kind),
            Some((Kind::Forbidden, ErrorCode::AgentNotActive))
        );
    }

    /// The bits of the node's status list `list`, decoded from its JWS as a verifier would.
    fn status_bits(state: &AppState, list: u64) -> Vec<u8> {
        use std::io::Read as _;
        let jws = status_list(state, list).unwrap();
        let jws = String::from_utf8(jws.body.to_vec()).unwrap();
        let payload = URL_SAFE_NO_PAD
            .decode(jws.split('.').nth(1).unwrap())
            .unwrap();
        let vc: Value = serde_json::from_slice(&payload).unwrap();
        let enc = vc["credentialSubject"]["encodedList"].as_str().unwrap();
        let zipped = URL_SAFE_NO_PAD
            .decode(enc.strip_prefix('u').unwrap())
            .unwrap();
        let mut bits = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut bits)
            .unwrap();
        assert_eq!(bits.len() * 8, artifacts::STATUS_LIST_BITS);
        bits
    }

    fn bit(bits: &[u8], i: u64) -> bool {
        bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    #[tokio::test]
    async fn one_status_list_for_the_node_with_a_bit_per_agent() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (a, _) = fixtures::agent(&state, &org.id, true).await;
        let (b, _) = fixtures::agent(&state, &org.id, true).await;
        let ia = state.store.status_index(&a.id).unwrap().unwrap();
        let ib = state.store.status_index(&b.id).unwrap().unwrap();
        assert_ne!(ia, ib);
        // Each badge points at its own bit of list 0.
        for (agent, index) in [(&a, ia), (&b, ib)] {
            let x = state
                .artifacts
                .get(&agent.id, &state.keys())
                .unwrap()
                .unwrap();
            let jws = x.badge(&state.settings, state.clock.now_ms()).unwrap();
            let jws = String::from_utf8(jws.body.to_vec()).unwrap();
            let payload = URL_SAFE_NO_PAD
                .decode(jws.split('.').nth(1).unwrap())
                .unwrap();
            let vc: Value = serde_json::from_slice(&payload).unwrap();
            let entry = &vc["credentialStatus"];
            assert_eq!(entry["statusListIndex"], index.to_string());
            assert_eq!(
                entry["statusListCredential"],
                format!("{}/status/0", state.settings.issuer)
            );
        }
        assert!(!bit(&status_bits(&state, 0), ia));
        // Suspending one agent sets its bit only, at once; reactivating clears it.
        fixtures::set_agent_status(&state, &a.id, AgentStatus::Suspended).await;
        let bits = status_bits(&state, 0);
        assert!(bit(&bits, ia) && !bit(&bits, ib));
        fixtures::set_agent_status(&state, &a.id, AgentStatus::Active).await;
        assert!(!bit(&status_bits(&state, 0), ia));
        // The organization's suspension covers all its agents.
        fixtures::set_org_status(&state, &org.id, OrgStatus::Suspended).await;
        let bits = status_bits(&state, 0);
        assert!(bit(&bits, ia) && bit(&bits, ib));
        // No list beyond the positions given out.
        assert_eq!(
            status_list(&state, 1).err().map(kind),
            Some((Kind::NotFound, ErrorCode::StatusListNotFound))
        );
        assert_eq!(
            status_list(&state, u64::MAX).err().map(kind),
            Some((Kind::NotFound, ErrorCode::StatusListNotFound))
        );
    }

    #[tokio::test]
    async fn the_node_document_lists_the_keys_in_force_and_is_only_at_the_well_known_path() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let doc: Value = serde_json::from_slice(&node_document(&state).body).unwrap();
        let node_did = state.settings.node_did.to_string();
        assert_eq!(doc["id"], node_did);
        assert_eq!(
            doc["verificationMethod"][0]["id"],
            format!("{node_did}#{}", state.keys().active.kid)
        );
        // The test node's public URL has no path.
        assert_eq!(
            node_document_at_path(&state).err().map(kind),
            Some((Kind::NotFound, ErrorCode::DidDocumentNotHere))
        );
    }

    #[tokio::test]
    async fn resolution_is_tenant_scoped_and_says_when_a_did_is_deactivated() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let other = fixtures::org(&state).await;
        let (agent, key) = fixtures::agent(&state, &org.id, true).await;
        let reader = caller(&org.id, &[Scope::AgentsRead]);

        let body = resolve(&state, &reader, &agent.id).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let r = result(body);
        let doc = serde_json::to_value(r.did_document.unwrap()).unwrap();
        assert_eq!(doc["id"], state.agent_did(&agent.id));
        assert!(doc["verificationMethod"][0]["id"]
            .as_str()
            .unwrap()
            .ends_with(&key.kid));
        assert!(!r.did_document_metadata.deactivated);
        // DID Core §7.1.2: contentType MUST NOT be present when `resolve` was called; §7.1.3:
        // datetimes normalized to UTC without sub-second precision.
        assert!(v["didResolutionMetadata"].get("contentType").is_none());
        for t in [
            r.did_document_metadata.created,
            r.did_document_metadata.updated,
        ] {
            let t = t.unwrap();
            assert!(t.ends_with('Z') && !t.contains('.') && t.len() == 20, "{t}");
        }

        // Another organization's agent does not exist for this caller; a caller without
        // agents:read may not resolve.
        assert_eq!(
            resolve(&state, &caller(&other.id, &[Scope::AgentsRead]), &agent.id)
                .err()
                .map(kind),
            Some((Kind::NotFound, ErrorCode::AgentNotFound))
        );
        assert_eq!(
            resolve(&state, &caller(&org.id, &[Scope::AuditRead]), &agent.id)
                .err()
                .map(kind),
            Some((Kind::Forbidden, ErrorCode::AuthorizationError))
        );
        assert_eq!(
            resolve(&state, &reader, &Uuid::new_v4()).err().map(kind),
            Some((Kind::NotFound, ErrorCode::AgentNotFound))
        );

        // A suspended agent still resolves with its keys; a decommissioned one is deactivated
        // and keeps its identity only.
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Suspended).await;
        let r = result(resolve(&state, &reader, &agent.id).unwrap());
        assert!(!r.did_document_metadata.deactivated);
        let doc = serde_json::to_value(r.did_document.unwrap()).unwrap();
        assert!(doc["verificationMethod"].is_array());
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Decommissioned).await;
        let r = result(resolve(&state, &reader, &agent.id).unwrap());
        assert!(r.did_document_metadata.deactivated);
        let doc = serde_json::to_value(r.did_document.unwrap()).unwrap();
        assert_eq!(doc["id"], state.agent_did(&agent.id));
        assert!(doc
            .get("verificationMethod")
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty)));
    }

    // --- Badge verification -------------------------------------------------------------

    const HOUR: i64 = 3600 * 1000;

    /// A badge of `agent` issued by the node at `at` (ms).
    fn issued_at(state: &AppState, agent: &Uuid, at: i64) -> String {
        let x = state.artifacts.get(agent, &state.keys()).unwrap().unwrap();
        let r = x.badge(&state.settings, at).unwrap();
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    /// The protected header the node puts on its badges.
    fn node_header(state: &AppState) -> Value {
        let ring = state.keys();
        json!({
            "alg": ring.active.alg,
            "kid": format!("{}#{}", state.settings.node_did, ring.active.kid),
            "typ": "vc+jwt",
            "cty": "vc",
        })
    }

    /// Badge claims about `subject`, valid for a day from now.
    fn claims(state: &AppState, subject: &str) -> Value {
        let now = state.clock.now_ms();
        json!({
            "@context": [VC_CONTEXT],
            "type": ["VerifiableCredential", "AgentBadge"],
            "issuer": state.settings.node_did.to_string(),
            "validFrom": rfc3339(now),
            "validUntil": rfc3339(now + 24 * HOUR),
            "credentialSubject": { "id": subject, "badge": "{\"name\":\"x\"}" },
        })
    }

    /// `payload` signed by the node's active key under `header`.
    fn signed(state: &AppState, header: &Value, payload: &Value) -> String {
        state
            .keys()
            .active
            .sign_with_header(header, payload.to_string().as_bytes())
            .unwrap()
    }

    /// `jws` with its protected header replaced (the signature no longer covers it).
    fn reheaded(jws: &str, header: &Value) -> String {
        let rest = jws.split_once('.').unwrap().1;
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
    }

    fn refusal(state: &AppState, badge: &str) -> ErrorCode {
        match verify_badge(state, badge) {
            Err(e @ DomainError::Unprocessable { .. }) => e.code(),
            Err(e) => panic!("not a 422 refusal: {e:?}"),
            Ok(v) => panic!("verified: {v:?}"),
        }
    }

    #[tokio::test]
    async fn a_badge_the_node_issued_verifies_and_says_whose_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (agent, _) = fixtures::agent(&state, &org.id, true).await;
        let badge = agent_badge(&state, &agent.id).unwrap();
        let v = verify_badge(&state, std::str::from_utf8(&badge.body).unwrap()).unwrap();
        assert_eq!(v.agent_id, agent.id);
        assert_eq!(v.did, state.agent_did(&agent.id));
        assert_eq!(v.issuer, state.settings.node_did.to_string());
        assert_eq!(v.card["name"], "Resume Screener");
        let until = parse_rfc3339(&v.valid_until).unwrap();
        let from = parse_rfc3339(&v.valid_from).unwrap();
        assert_eq!(until - from, artifacts::BADGE_VALIDITY_MS);
    }

    #[tokio::test]
    async fn forged_and_malformed_badges_are_refused_with_their_code() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (agent, _) = fixtures::agent(&state, &org.id, true).await;
        let now = state.clock.now_ms();
        let good = issued_at(&state, &agent.id, now);
        let did = state.agent_did(&agent.id);
        let node_did = state.settings.node_did.to_string();
        let header = node_header(&state);
        let with = |k: &str, v: Value| {
            let mut h = header.clone();
            h[k] = v;
            h
        };

        // Malformed: not a compact JWS, too large, not a credential, not an AgentBadge.
        use ErrorCode::*;
        for bad in ["", "not-a-jws", "a.b", "a.b.c.d", "!!.e30.AA"] {
            assert_eq!(refusal(&state, bad), BadgeMalformed, "{bad:?}");
        }
        // A kid that is not a string (null included) is malformed, as in every JOSE header.
        for kid in [Value::Null, json!(7)] {
            assert_eq!(
                refusal(&state, &reheaded(&good, &with("kid", kid.clone()))),
                BadgeMalformed,
                "{kid}"
            );
        }
        let mut no_kid = header.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_eq!(
            refusal(&state, &reheaded(&good, &no_kid)),
            BadgeIssuerUnknown
        );
        let huge = format!("{}{}", good, "A".repeat(MAX_BADGE_LEN));
        assert_eq!(refusal(&state, &huge), BadgeMalformed);
        assert_eq!(
            refusal(&state, &signed(&state, &header, &json!({"hello": "world"}))),
            BadgeMalformed
        );
        let mut not_a_badge = claims(&state, &did);
        not_a_badge["type"] = json!(["VerifiableCredential"]);
        assert_eq!(
            refusal(&state, &signed(&state, &header, &not_a_badge)),
            BadgeMalformed
        );
        let mut other_context = claims(&state, &did);
        other_context["@context"] = json!(["https://www.w3.org/2018/credentials/v1"]);
        assert_eq!(
            refusal(&state, &signed(&state, &header, &other_context)),
            BadgeMalformed
        );
        let mut bad_time = claims(&state, &did);
        bad_time["validUntil"] = json!("tomorrow");
        assert_eq!(
            refusal(&state, &signed(&state, &header, &bad_time)),
            BadgeMalformed
        );
        let mut no_card = claims(&state, &did);
        no_card["credentialSubject"]["badge"] = json!("[1, 2]");
        assert_eq!(
            refusal(&state, &signed(&state, &header, &no_card)),
            BadgeMalformed
        );

        // Wrong type: another typ, no typ, or a crit header.
        for h in [
            with("typ", json!("JWT")),
            with("typ", Value::Null),
            with("crit", json!(["exp"])),
        ] {
            assert_eq!(
                refusal(&state, &reheaded(&good, &h)),
                BadgeUnsupportedType,
                "{h}"
            );
        }

        // Unknown issuer: a kid outside the node's DID, or claims naming another issuer.
        for kid in [
            json!("did:web:elsewhere.example#k1"),
            json!(state.keys().active.kid.clone()),
        ] {
            assert_eq!(
                refusal(&state, &reheaded(&good, &with("kid", kid.clone()))),
                BadgeIssuerUnknown,
                "{kid}"
            );
        }
        let mut other_issuer = claims(&state, &did);
        other_issuer["issuer"] = json!("did:web:elsewhere.example");
        assert_eq!(
            refusal(&state, &signed(&state, &header, &other_issuer)),
            BadgeIssuerUnknown
        );

        // Unknown key: a verification method of the node it does not publish.
        assert_eq!(
            refusal(
                &state,
                &reheaded(
                    &good,
                    &with("kid", json!(format!("{node_did}#retired-long-ago")))
                )
            ),
            BadgeKeyUnknown
        );

        // Bad signature: altered payload, altered signature, another algorithm.
        let (head, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(other_issuer.to_string());
        assert_eq!(
            refusal(&state, &format!("{head}.{forged_payload}.{sig}")),
            BadgeSignatureInvalid
        );
        let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig_bytes[0] ^= 1;
        let flipped = format!(
            "{}.{}",
            good.rsplit_once('.').unwrap().0,
            URL_SAFE_NO_PAD.encode(&sig_bytes)
        );
        assert_eq!(refusal(&state, &flipped), BadgeSignatureInvalid);
        assert_eq!(
            refusal(&state, &reheaded(&good, &with("alg", json!("RS256")))),
            BadgeSignatureInvalid
        );
        assert_eq!(
            refusal(&state, &reheaded(&good, &with("alg", json!("none")))),
            BadgeSignatureInvalid
        );

        // The untouched badge still verifies: each refusal above is the alteration's doing.
        assert!(verify_badge(&state, &good).is_ok());
    }

    #[tokio::test]
    async fn a_badge_is_valid_for_a_day_give_or_take_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (agent, _) = fixtures::agent(&state, &org.id, true).await;
        let now = state.clock.now_ms();
        let minute = 60_000;
        let at = |t: i64| issued_at(&state, &agent.id, t);
        use ErrorCode::*;
        assert_eq!(refusal(&state, &at(now + 5 * minute)), BadgeNotYetValid);
        assert_eq!(refusal(&state, &at(now + 2 * minute)), BadgeNotYetValid);
        assert!(
            verify_badge(&state, &at(now + 30_000)).is_ok(),
            "within the leeway"
        );
        assert!(verify_badge(&state, &at(now - 23 * HOUR)).is_ok());
        assert!(
            verify_badge(&state, &at(now - 24 * HOUR - 20_000)).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            refusal(&state, &at(now - 24 * HOUR - 2 * minute)),
            BadgeExpired
        );
        assert_eq!(refusal(&state, &at(now - 30 * 24 * HOUR)), BadgeExpired);
    }

    #[tokio::test]
    async fn a_badge_vouches_only_for_an_agent_that_exists_and_is_in_good_standing() {
        let dir = tempfile::tempdir().unwrap();
        let state = testing::state(dir.path()).await;
        let org = fixtures::org(&state).await;
        let (agent, _) = fixtures::agent(&state, &org.id, true).await;
        let header = node_header(&state);
        let node_did = state.settings.node_did.to_string();
        use ErrorCode::*;

        // Subject unknown: no such agent here, or not an agent DID of this node.
        for subject in [
            format!("{node_did}:agents:{}", Uuid::new_v4()),
            format!("did:web:elsewhere.example:agents:{}", agent.id),
            format!("{node_did}:agents:not-a-uuid"),
            node_did.clone(),
        ] {
            let badge = signed(&state, &header, &claims(&state, &subject));
            assert_eq!(refusal(&state, &badge), BadgeSubjectUnknown, "{subject}");
        }

        let badge = issued_at(&state, &agent.id, state.clock.now_ms());
        assert!(verify_badge(&state, &badge).is_ok());
        // Not active: the agent suspended, or its organization.
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Suspended).await;
        assert_eq!(refusal(&state, &badge), BadgeSubjectNotActive);
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Active).await;
        assert!(verify_badge(&state, &badge).is_ok(), "reactivated");
        fixtures::set_org_status(&state, &org.id, OrgStatus::Suspended).await;
        assert_eq!(refusal(&state, &badge), BadgeSubjectNotActive);
        fixtures::set_org_status(&state, &org.id, OrgStatus::Active).await;
        assert!(verify_badge(&state, &badge).is_ok());
        // Deactivated: decommissioned, for good — also while its organization is suspended.
        fixtures::set_agent_status(&state, &agent.id, AgentStatus::Decommissioned).await;
        assert_eq!(refusal(&state, &badge), BadgeSubjectDeactivated);
        fixtures::set_org_status(&state, &org.id, OrgStatus::Suspended).await;
        assert_eq!(refusal(&state, &badge), BadgeSubjectDeactivated);
    }
}
