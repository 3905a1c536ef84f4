//! Validation of what callers give the registry (organizations, agents, their cards), returning
//! [`DomainError`]: a 400 `VALIDATION_ERROR` naming the field and the reason, or
//! `SCOPE_ESCALATION` for a scope the caller may not grant. Every function checks one rule,
//! documented on it; the tests below are tables of examples of each rule.
//!
//! Wire strings that name a stored enum (statuses, plan tiers) are parsed here into the storage
//! enums, so the rest of the domain never compares strings.

use storage::{AgentStatus, OrgStatus, PlanTier};

use super::error::DomainError;
use super::vocab::Scope;
use crate::model::{LocatorView, SkillView};

/// Agent types (the predecessor's enum).
pub(crate) const AGENT_TYPES: &[&str] = &[
    "screener",
    "classifier",
    "orchestrator",
    "extractor",
    "summarizer",
    "router",
    "monitor",
    "custom",
];

/// Deployment environments.
pub(crate) const DEPLOYMENT_ENVS: &[&str] = &["development", "staging", "production"];

/// Largest page a listing returns.
const MAX_PAGE_SIZE: usize = 100;
/// Page size of a listing that names none.
const DEFAULT_PAGE_SIZE: usize = 20;

/// A string of `min..=max` visible characters (see [`crate::app::text`]).
pub(crate) fn check_len(field: &str, v: &str, min: usize, max: usize) -> Result<(), DomainError> {
    crate::app::text::check_text(v, min, max)
        .map_err(|e| DomainError::validation(field, e.to_string()))
}

/// A name, owner or other short text: 1 to 256 visible characters.
pub(crate) fn check_text(field: &str, v: &str) -> Result<(), DomainError> {
    check_len(field, v, 1, 256)
}

/// An email: 3 to 254 visible characters (RFC 5321 §4.5.3.1.3 bounds a path at 256 octets,
/// the angle brackets included), one `@` with something on each side, no white space.
pub(crate) fn check_email(v: &str) -> Result<(), DomainError> {
    check_len("email", v, 3, 254)?;
    match v.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !v.chars().any(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(DomainError::validation(
            "email",
            "must look like name@domain",
        )),
    }
}

/// One of a closed list of values.
pub(crate) fn check_one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), DomainError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(DomainError::validation(
            field,
            format!("must be one of: {}", allowed.join(", ")),
        ))
    }
}

/// A semantic version (SemVer 2.0.0 §2: `MAJOR.MINOR.PATCH` of decimal digits, then an optional
/// `-pre-release` and `+build` of letters, digits, dots and hyphens), at most 64 characters.
pub(crate) fn check_version(v: &str) -> Result<(), DomainError> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = v.len() <= 64
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DomainError::validation(
            "version",
            "must be a semantic version like 1.4.2",
        ))
    }
}

/// Capabilities: at most 100, each `resource:action` (at most 128 characters; each part of
/// letters, digits, `_`, `.`, `*` and `-`).
pub(crate) fn check_capabilities(v: &[String]) -> Result<(), DomainError> {
    if v.len() > 100 {
        return Err(DomainError::validation(
            "capabilities",
            "at most 100 entries",
        ));
    }
    let part_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.*-".contains(c))
    };
    for c in v {
        match c.split_once(':') {
            Some((r, a)) if c.len() <= 128 && part_ok(r) && part_ok(a) => {}
            _ => {
                return Err(DomainError::validation(
                    "capabilities",
                    format!("{c:?} is not in resource:action form"),
                ))
            }
        }
    }
    Ok(())
}

/// Scopes given to an agent must be known, grantable in its organization (`admin:orgs` only in
/// the node's own), and held by the caller: nobody can mint an agent stronger than themselves.
pub(crate) fn check_scopes(
    v: &[String],
    caller_scopes: &[Scope],
    system_org: bool,
) -> Result<(), DomainError> {
    for s in v {
        let Some(scope) = Scope::parse(s) else {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            return Err(DomainError::validation(
                "scopes",
                format!("unknown scope {s:?}; known: {}", known.join(", ")),
            ));
        };
        if !Scope::grantable(system_org).contains(&scope) || !caller_scopes.contains(&scope) {
            return Err(DomainError::scope_escalation(format!(
                "You cannot give an agent the scope {s:?}: it is not one you hold and may grant."
            )));
        }
    }
    Ok(())
}

/// Free-form metadata: a JSON object of at most 16 KiB whose strings are all visible text. It
/// is stored and shown to the agent's organization, and never put in a public document.
pub(crate) fn check_metadata(v: &serde_json::Value) -> Result<(), DomainError> {
    if !v.is_object() {
        return Err(DomainError::validation("metadata", "must be a JSON object"));
    }
    if v.to_string().len() > 16 * 1024 {
        return Err(DomainError::validation(
            "metadata",
            "must be at most 16 KiB",
        ));
    }
    crate::app::text::check_json_visible(v)
        .map_err(|e| DomainError::validation("metadata", e.to_string()))
}

/// The card fields of a registration or an update, checked together.
pub(crate) struct CardFields<'a> {
    pub(crate) description: Option<&'a str>,
    pub(crate) skills: &'a [SkillView],
    pub(crate) domains: &'a [SkillView],
    pub(crate) locators: &'a [LocatorView],
    pub(crate) endpoints: &'a [String],
}

/// The fields an agent's public card and OASF record are made of:
/// - `description`: 1 to 2048 visible characters;
/// - `skills`, `domains`: OASF taxonomy references (see [`check_taxonomy_refs`]), and when the
///   node has the OASF taxonomy, entries of it;
/// - `locators`: at most one per OASF locator type, each 1 to 10 public URLs: `https`, or
///   `oci` for container images and Helm charts (they live in OCI registries);
/// - `endpoints`: at most 20 public `https` URLs.
pub(crate) fn check_card(
    c: &CardFields<'_>,
    taxonomy: Option<&oasf::Taxonomy>,
) -> Result<(), DomainError> {
    if let Some(d) = c.description {
        check_len("description", d, 1, 2048)?;
    }
    check_taxonomy_refs("skills", c.skills)?;
    check_taxonomy_refs("domains", c.domains)?;
    if let Some(t) = taxonomy {
        for (i, s) in c.skills.iter().enumerate() {
            t.check_skill(Some(s.id), Some(&s.name))
                .map_err(|e| DomainError::validation(&format!("skills[{i}]"), e.to_string()))?;
        }
        for (i, d) in c.domains.iter().enumerate() {
            t.check_domain(Some(d.id), Some(&d.name))
                .map_err(|e| DomainError::validation(&format!("domains[{i}]"), e.to_string()))?;
        }
    }
    let types = oasf::LocatorType::ALL.map(|t| t.as_str());
    if c.locators.len() > types.len() {
        return Err(DomainError::validation(
            "locators",
            "at most one locator of each type",
        ));
    }
    for (i, l) in c.locators.iter().enumerate() {
        let field = format!("locators[{i}]");
        check_one_of(&format!("{field}.type"), &l.kind, &types)?;
        if c.locators[..i].iter().any(|o| o.kind == l.kind) {
            return Err(DomainError::validation(
                &field,
                format!("a second locator of type {}; give each type once", l.kind),
            ));
        }
        if l.urls.is_empty() || l.urls.len() > 10 {
            return Err(DomainError::validation(
                &format!("{field}.urls"),
                "give 1 to 10 URLs",
            ));
        }
        let schemes: &[&str] = if l.kind == oasf::LocatorType::ContainerImage.as_str()
            || l.kind == oasf::LocatorType::HelmChart.as_str()
        {
            &["https", "oci"]
        } else {
            &["https"]
        };
        for (j, u) in l.urls.iter().enumerate() {
            crate::app::text::check_public_url(u, schemes).map_err(|e| {
                DomainError::validation(&format!("{field}.urls[{j}]"), e.to_string())
            })?;
        }
    }
    if c.endpoints.len() > 20 {
        return Err(DomainError::validation("endpoints", "at most 20 entries"));
    }
    for (i, e) in c.endpoints.iter().enumerate() {
        crate::app::text::check_public_url(e, &["https"])
            .map_err(|err| DomainError::validation(&format!("endpoints[{i}]"), err.to_string()))?;
    }
    Ok(())
}

/// OASF `{id, name}` entries: at most 100, ids positive, names `segment/segment…` of lowercase
/// letters, digits and `_` (at most 256 characters), no id twice.
pub(crate) fn check_taxonomy_refs(field: &str, v: &[SkillView]) -> Result<(), DomainError> {
    if v.len() > 100 {
        return Err(DomainError::validation(field, "at most 100 entries"));
    }
    for (i, s) in v.iter().enumerate() {
        let f = format!("{field}[{i}]");
        check_len(&format!("{f}.name"), &s.name, 1, 256)?;
        let name_ok = s.name.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if !name_ok {
            return Err(DomainError::validation(
                &format!("{f}.name"),
                "must be an OASF taxonomy name like natural_language_processing/summarization",
            ));
        }
        if s.id == 0 {
            return Err(DomainError::validation(
                &format!("{f}.id"),
                "must be a positive OASF id",
            ));
        }
        if v[..i].iter().any(|o| o.id == s.id) {
            return Err(DomainError::validation(
                &f,
                format!("id {} is listed twice", s.id),
            ));
        }
    }
    Ok(())
}

/// An organization's slug: 1 to 64 lowercase ASCII letters, digits and hyphens (it appears in
/// URLs and default emails).
pub(crate) fn check_slug(slug: &str) -> Result<(), DomainError> {
    let ok = (1..=64).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::validation(
            "slug",
            "must be 1 to 64 lowercase letters, digits and hyphens",
        ))
    }
}

/// The largest plan limit a client can read back exactly: JSON numbers beyond 2^53 − 1 lose
/// precision in JavaScript (ECMA-262 `Number.MAX_SAFE_INTEGER`). "Unlimited" is `null` on the
/// wire.
pub(crate) const MAX_LIMIT: u64 = (1 << 53) - 1;

/// A plan limit given by a client: 1 to [`MAX_LIMIT`] (`null` means unlimited and is not a
/// number here).
pub(crate) fn check_limit(field: &str, v: Option<u64>) -> Result<(), DomainError> {
    match v {
        Some(0) => Err(DomainError::validation(field, "must be at least 1")),
        Some(n) if n > MAX_LIMIT => Err(DomainError::validation(
            field,
            format!("must be at most {MAX_LIMIT}; use null for unlimited"),
        )),
        _ => Ok(()),
    }
}

/// A listing's page (from 1) and page size (1 to 100, default 20).
pub(crate) fn page_params(
    page: Option<usize>,
    limit: Option<usize>,
) -> Result<(usize, usize), DomainError> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if page == 0 {
        return Err(DomainError::validation("page", "must be at least 1"));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(DomainError::validation(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok((page, limit))
}

/// The value of `all` whose wire name is `v`, or a validation error listing them.
fn parse_named<T: Copy>(
    field: &str,
    v: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    hint: &str,
) -> Result<T, DomainError> {
    all.iter().copied().find(|x| name(*x) == v).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|x| name(*x)).collect();
        let list = match names.as_slice() {
            [a, b] => format!("{a} or {b}"),
            _ => format!("one of: {}", names.join(", ")),
        };
        DomainError::validation(field, format!("must be {list}{hint}"))
    })
}

/// An agent status by its wire name.
pub(crate) fn parse_agent_status(v: &str) -> Result<AgentStatus, DomainError> {
    use AgentStatus::*;
    parse_named(
        "status",
        v,
        &[Active, Suspended, Decommissioned],
        AgentStatus::as_str,
        "",
    )
}

/// An organization status to filter a listing by.
pub(crate) fn parse_org_status(v: &str) -> Result<OrgStatus, DomainError> {
    use OrgStatus::*;
    parse_named(
        "status",
        v,
        &[Active, Suspended, Deleted],
        OrgStatus::as_str,
        "",
    )
}

/// An organization status a PATCH may set (deletion is a DELETE).
pub(crate) fn parse_org_status_change(v: &str) -> Result<OrgStatus, DomainError> {
    use OrgStatus::*;
    parse_named(
        "status",
        v,
        &[Active, Suspended],
        OrgStatus::as_str,
        " (use DELETE to delete)",
    )
}

/// A plan tier by its wire name.
pub(crate) fn parse_plan(v: &str) -> Result<PlanTier, DomainError> {
    use PlanTier::*;
    parse_named(
        "planTier",
        v,
        &[Free, Pro, Enterprise],
        PlanTier::as_str,
        "",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ErrorCode;

    /// `Ok(())` or the field and reason of a validation error.
    fn outcome(r: Result<(), DomainError>) -> Result<(), (String, String)> {
        r.map_err(|e| {
            assert_eq!(e.code(), ErrorCode::ValidationError, "{e}");
            let d = e.details().cloned().unwrap_or_default();
            (
                d["field"].as_str().unwrap_or_default().to_string(),
                d["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
    }

    fn refused(r: Result<(), DomainError>, field: &str, reason_part: &str) {
        match outcome(r) {
            Err((f, reason)) => {
                assert_eq!(f, field);
                assert!(
                    reason.contains(reason_part),
                    "{reason:?} lacks {reason_part:?}"
                );
            }
            Ok(()) => panic!("{field}: accepted, expected a refusal ({reason_part})"),
        }
    }

    #[test]
    fn emails_are_name_at_domain_within_rfc_5321_bounds() {
        // (value, accepted) — RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its
        // brackets, so an address at most 254.
        let long_ok = format!("{}@example.com", "a".repeat(254 - 12));
        let long_bad = format!("{}@example.com", "a".repeat(255 - 12));
        let cases: &[(&str, bool)] = &[
            ("agent@example.com", true),
            ("a@b", true),
            ("Émile@exemple.fr", true),
            (&long_ok, true),
            (&long_bad, false),
            ("ab", false),
            ("no-at-sign", false),
            ("@example.com", false),
            ("agent@", false),
            ("a@b@c", false),
            ("agent @example.com", false),
            ("agent@exa\u{202E}mple.com", false),
        ];
        for (v, ok) in cases {
            assert_eq!(check_email(v).is_ok(), *ok, "{v:?}");
            if !ok {
                assert_eq!(outcome(check_email(v)).unwrap_err().0, "email");
            }
        }
    }

    #[test]
    fn versions_follow_semver_2() {
        // SemVer 2.0.0 §2 (three numeric parts), §9 (pre-release), §10 (build metadata).
        for (v, ok) in [
            ("1.4.2", true),
            ("0.0.0", true),
            ("2.3.4-beta.1", true),
            ("1.0.0+build.7", true),
            ("1.0.0-rc.1+sha.5114f85", true),
            ("1.4", false),
            ("1.4.2.1", false),
            ("v1.4.2", false),
            ("1..2", false),
            ("1.4.x", false),
            ("1.0.0-beta_1", false),
            ("", false),
        ] {
            assert_eq!(check_version(v).is_ok(), ok, "{v:?}");
        }
        let too_long = format!("1.0.0-{}", "a".repeat(59));
        refused(check_version(&too_long), "version", "semantic version");
    }

    #[test]
    fn capabilities_are_resource_action_pairs() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for (caps, ok) in [
            (v(&[]), true),
            (v(&["documents:read", "documents:*", "a.b-c_d:x"]), true),
            (v(&["documents"]), false),
            (v(&[":read"]), false),
            (v(&["documents:"]), false),
            (v(&["doc uments:read"]), false),
            (v(&["a:b:c"]), false),
        ] {
            assert_eq!(check_capabilities(&caps).is_ok(), ok, "{caps:?}");
        }
        let long = format!("{}:read", "r".repeat(124));
        refused(
            check_capabilities(&[long]),
            "capabilities",
            "resource:action",
        );
        let many: Vec<String> = (0..101).map(|i| format!("r{i}:read")).collect();
        refused(check_capabilities(&many), "capabilities", "at most 100");
    }

    #[test]
    fn texts_are_one_to_256_visible_characters() {
        assert!(check_text("name", "Acme Corp").is_ok());
        assert!(
            check_text("name", &"é".repeat(256)).is_ok(),
            "counted in characters"
        );
        refused(check_text("name", ""), "name", "1 to 256");
        refused(check_text("name", &"a".repeat(257)), "name", "1 to 256");
        refused(check_text("owner", "a\u{200B}b"), "owner", "U+200B");
        refused(check_text("owner", "line\nbreak"), "owner", "control");
    }

    #[test]
    fn closed_lists_name_their_values() {
        assert!(check_one_of("agentType", "screener", AGENT_TYPES).is_ok());
        assert!(check_one_of("deploymentEnv", "staging", DEPLOYMENT_ENVS).is_ok());
        refused(
            check_one_of("deploymentEnv", "prod", DEPLOYMENT_ENVS),
            "deploymentEnv",
            "must be one of: development, staging, production",
        );
        refused(
            check_one_of("agentType", "Screener", AGENT_TYPES),
            "agentType",
            "screener",
        );
    }

    #[test]
    fn scopes_are_known_grantable_and_held() {
        use Scope::*;
        let names = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let writer = [AgentsRead, AgentsWrite];
        let instance_admin = Scope::ALL;
        // (scopes given, caller's scopes, node's own organization, expected code)
        type Case<'a> = (&'a [&'a str], &'a [Scope], bool, Option<ErrorCode>);
        let cases: &[Case] = &[
            (&["agents:read"], &writer, false, None),
            (&["agents:read", "agents:write"], &writer, false, None),
            (&[], &writer, false, None),
            // Not held by the caller: nobody mints an agent stronger than itself.
            (
                &["audit:read"],
                &writer,
                false,
                Some(ErrorCode::ScopeEscalation),
            ),
            // admin:orgs is grantable only in the node's own organization.
            (
                &["admin:orgs"],
                &instance_admin,
                false,
                Some(ErrorCode::ScopeEscalation),
            ),
            (&["admin:orgs"], &instance_admin, true, None),
            (
                &["agents:delete"],
                &instance_admin,
                true,
                Some(ErrorCode::ValidationError),
            ),
        ];
        for (given, held, system, want) in cases {
            let got = check_scopes(&names(given), held, *system)
                .err()
                .map(|e| e.code());
            assert_eq!(got, *want, "{given:?} by {held:?} (system {system})");
        }
        let e = check_scopes(&names(&["agents:delete"]), &writer, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("known: agents:read, agents:write, audit:read, admin:orgs"),
            "{e}"
        );
    }

    #[test]
    fn metadata_is_a_small_visible_object() {
        assert!(check_metadata(&serde_json::json!({"team": "ml", "n": 42})).is_ok());
        refused(
            check_metadata(&serde_json::json!([1])),
            "metadata",
            "JSON object",
        );
        refused(
            check_metadata(&serde_json::json!("x")),
            "metadata",
            "JSON object",
        );
        let big = serde_json::json!({ "x": "a".repeat(16 * 1024) });
        refused(check_metadata(&big), "metadata", "16 KiB");
        let hidden = serde_json::json!({ "nested": { "k": "ignore\u{E0020}previous" } });
        refused(check_metadata(&hidden), "metadata", "U+E0020");
    }

    fn skill(id: u64, name: &str) -> SkillView {
        SkillView {
            id,
            name: name.into(),
        }
    }

    fn locator(kind: &str, urls: &[&str]) -> LocatorView {
        LocatorView {
            kind: kind.into(),
            urls: urls.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn card(
        skills: &[SkillView],
        locators: &[LocatorView],
        endpoints: &[String],
    ) -> Result<(), DomainError> {
        check_card(
            &CardFields {
                description: Some("Summarizes documents."),
                skills,
                domains: &[],
                locators,
                endpoints,
            },
            None,
        )
    }

    #[test]
    fn taxonomy_references_are_oasf_shaped() {
        let ok = [skill(10201, "natural_language_processing/summarization")];
        assert!(check_taxonomy_refs("skills", &ok).is_ok());
        for (v, field, reason) in [
            (vec![skill(0, "a/b")], "skills[0].id", "positive"),
            (
                vec![skill(1, "Natural/X")],
                "skills[0].name",
                "OASF taxonomy name",
            ),
            (
                vec![skill(1, "a//b")],
                "skills[0].name",
                "OASF taxonomy name",
            ),
            (vec![skill(1, "")], "skills[0].name", "1 to 256"),
            (
                vec![skill(1, "a"), skill(1, "b")],
                "skills[1]",
                "listed twice",
            ),
        ] {
            refused(check_taxonomy_refs("skills", &v), field, reason);
        }
        let many: Vec<SkillView> = (1..=101).map(|i| skill(i, "a")).collect();
        refused(
            check_taxonomy_refs("domains", &many),
            "domains",
            "at most 100",
        );
    }

    #[test]
    fn card_urls_are_public_and_locators_one_per_type() {
        let https = "https://example.com/agent";
        assert!(card(&[], &[locator("source_code", &[https])], &[https.into()]).is_ok());
        // OCI registries hold container images and Helm charts: oci:// only for those.
        assert!(card(
            &[],
            &[locator("container_image", &["oci://r.example/a:1"])],
            &[]
        )
        .is_ok());
        assert!(card(&[], &[locator("helm_chart", &["oci://r.example/c"])], &[]).is_ok());
        for (locators, endpoints, field) in [
            (
                vec![locator("source_code", &["oci://r.example/a"])],
                vec![],
                "locators[0].urls[0]",
            ),
            (
                vec![locator("url", &["javascript:alert(1)"])],
                vec![],
                "locators[0].urls[0]",
            ),
            (
                vec![locator("url", &["http://example.com"])],
                vec![],
                "locators[0].urls[0]",
            ),
            (vec![locator("url", &[])], vec![], "locators[0].urls"),
            (vec![locator("ftp", &[https])], vec![], "locators[0].type"),
            (
                vec![locator("url", &[https]), locator("url", &[https])],
                vec![],
                "locators[1]",
            ),
            (
                vec![],
                vec!["http://example.com".to_string()],
                "endpoints[0]",
            ),
            (vec![], vec![https.to_string(); 21], "endpoints"),
        ] {
            let e = outcome(card(&[], &locators, &endpoints)).unwrap_err();
            assert_eq!(e.0, field, "{locators:?} {endpoints:?}: {}", e.1);
        }
        let long = "d".repeat(2049);
        let e = check_card(
            &CardFields {
                description: Some(&long),
                skills: &[],
                domains: &[],
                locators: &[],
                endpoints: &[],
            },
            None,
        );
        refused(e, "description", "1 to 2048");
    }

    #[test]
    fn slugs_are_short_lowercase_words() {
        for (v, ok) in [
            ("acme", true),
            ("acme-2", true),
            (&"a".repeat(64) as &str, true),
            ("", false),
            (&"a".repeat(65) as &str, false),
            ("Acme", false),
            ("acme corp", false),
            ("acmé", false),
            ("acme_corp", false),
        ] {
            assert_eq!(check_slug(v).is_ok(), ok, "{v:?}");
        }
    }

    #[test]
    fn limits_are_positive_and_exact_in_javascript() {
        // ECMA-262 Number.MAX_SAFE_INTEGER: 2^53 − 1 is the largest integer a JSON number
        // round-trips through JavaScript exactly.
        assert_eq!(MAX_LIMIT, 9_007_199_254_740_991);
        for (v, ok) in [
            (None, true),
            (Some(1), true),
            (Some(MAX_LIMIT), true),
            (Some(0), false),
            (Some(MAX_LIMIT + 1), false),
            (Some(u64::MAX), false),
        ] {
            assert_eq!(check_limit("maxAgents", v).is_ok(), ok, "{v:?}");
        }
        refused(
            check_limit("maxAgents", Some(u64::MAX)),
            "maxAgents",
            "null for unlimited",
        );
    }

    #[test]
    fn pages_start_at_one_and_hold_at_most_100() {
        assert_eq!(page_params(None, None).unwrap(), (1, 20));
        assert_eq!(page_params(Some(3), Some(100)).unwrap(), (3, 100));
        refused(page_params(Some(0), None).map(|_| ()), "page", "at least 1");
        refused(
            page_params(None, Some(0)).map(|_| ()),
            "limit",
            "between 1 and 100",
        );
        refused(
            page_params(None, Some(101)).map(|_| ()),
            "limit",
            "between 1 and 100",
        );
    }

    #[test]
    fn wire_names_parse_into_the_stored_enums() {
        assert_eq!(
            parse_agent_status("decommissioned").unwrap(),
            AgentStatus::Decommissioned
        );
        assert_eq!(parse_org_status("deleted").unwrap(), OrgStatus::Deleted);
        assert_eq!(parse_plan("enterprise").unwrap(), PlanTier::Enterprise);
        refused(
            parse_agent_status("retired").map(|_| ()),
            "status",
            "must be one of: active, suspended, decommissioned",
        );
        refused(
            parse_org_status_change("deleted").map(|_| ()),
            "status",
            "must be active or suspended (use DELETE to delete)",
        );
        refused(
            parse_plan("gold").map(|_| ()),
            "planTier",
            "must be one of: free, pro, enterprise",
        );
    }
}
