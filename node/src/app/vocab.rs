//! The node's typed vocabulary: scopes and error codes as enums, so that a typo is a compile
//! error and every value that crosses the wire is one of a closed list.

use serde::{Deserialize, Serialize};

/// An OAuth scope this node knows. Stored and sent by name (`agents:read`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum Scope {
    /// Read the organization's agents, their credentials' metadata and keys, trust policies.
    #[serde(rename = "agents:read")]
    AgentsRead,
    /// Register, change and decommission agents; their credentials, keys and trust policies.
    #[serde(rename = "agents:write")]
    AgentsWrite,
    /// Read the organization's audit log and verify the chain.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// The instance admin's: organizations, federation partners, the node's signing keys.
    #[serde(rename = "admin:orgs")]
    AdminOrgs,
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
}

impl Scope {
    /// Every scope, in a stable order.
    pub(crate) const ALL: [Scope; 6] = [
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::AuditRead,
        Scope::AdminOrgs,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
    ];
    /// The scopes an organization may grant its agents (`admin:orgs` is the node's own).
    pub(crate) const TENANT: [Scope; 5] = [
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::AuditRead,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
    ];

    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
            Scope::AuditRead => "audit:read",
            Scope::AdminOrgs => "admin:orgs",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
        }
    }

    /// The scope named `s`, if this node knows it.
    pub(crate) fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The scopes grantable in an organization: `admin:orgs` only in the node's own.
    pub(crate) fn grantable(system_org: bool) -> &'static [Scope] {
        if system_org {
            &Scope::ALL
        } else {
            &Scope::TENANT
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes as stored (names); unknown names are dropped (a scope this build does not
/// know grants nothing).
pub(crate) fn scopes_of(names: &[String]) -> Vec<Scope> {
    names.iter().filter_map(|n| Scope::parse(n)).collect()
}

/// Scopes as stored and sent: their names, in the enum's order.
pub(crate) fn names_of(scopes: &[Scope]) -> Vec<String> {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v.into_iter().map(|s| s.as_str().to_string()).collect()
}

/// Defines [`ErrorCode`]: the stable codes of the API's error envelope.
macro_rules! error_codes {
    ($($variant:ident => $name:literal,)*) => {
        /// A stable, machine-readable error code of the API's error envelope
        /// (`{"code": ..., "message": ..., "details": ...}`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum ErrorCode {
            $(
                #[doc = $name]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code.
            pub(crate) const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire name, e.g. `AGENT_NOT_FOUND`.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    ValidationError => "VALIDATION_ERROR",
    UnknownField => "UNKNOWN_FIELD",
    MalformedJson => "MALFORMED_JSON",
    InvalidId => "INVALID_ID",
    InvalidQuery => "INVALID_QUERY",
    InvalidHeader => "INVALID_HEADER",
    MissingHeader => "MISSING_HEADER",
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
    PayloadTooLarge => "PAYLOAD_TOO_LARGE",
    LengthRequired => "LENGTH_REQUIRED",
    RequestTimeout => "REQUEST_TIMEOUT",
    BodyIncomplete => "BODY_INCOMPLETE",
    MethodNotAllowed => "METHOD_NOT_ALLOWED",
    RouteNotFound => "ROUTE_NOT_FOUND",
    Unauthorized => "UNAUTHORIZED",
    AuthorizationError => "AUTHORIZATION_ERROR",
    ScopeEscalation => "SCOPE_ESCALATION",
    AgentProtected => "AGENT_PROTECTED",
    LastAdmin => "LAST_ADMIN",
    RateLimited => "RATE_LIMITED",
    // Tenancy (issue 18).
    RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
    TokenQuotaExceeded => "TOKEN_QUOTA_EXCEEDED",
    AlreadyOnTier => "ALREADY_ON_TIER",
    DowngradeNotPermitted => "DOWNGRADE_NOT_PERMITTED",
    BillingNotConfigured => "BILLING_NOT_CONFIGURED",
    StripeError => "STRIPE_ERROR",
    StripeSignatureInvalid => "STRIPE_SIGNATURE_INVALID",
    AlreadyMember => "ALREADY_MEMBER",
    MemberNotFound => "MEMBER_NOT_FOUND",
    InvalidKey => "INVALID_KEY",
    UnsupportedKey => "UNSUPPORTED_KEY",
    PrivateKeyMaterial => "PRIVATE_KEY_MATERIAL",
    OrgNotFound => "ORG_NOT_FOUND",
    OrgSlugConflict => "ORG_SLUG_CONFLICT",
    OrgProtected => "ORG_PROTECTED",
    OrgAlreadyDeleted => "ORG_ALREADY_DELETED",
    OrgNotActive => "ORG_NOT_ACTIVE",
    AgentNotFound => "AGENT_NOT_FOUND",
    AgentAlreadyExists => "AGENT_ALREADY_EXISTS",
    AgentLimitExceeded => "AGENT_LIMIT_EXCEEDED",
    AgentDecommissioned => "AGENT_DECOMMISSIONED",
    AgentAlreadyDecommissioned => "AGENT_ALREADY_DECOMMISSIONED",
    AgentNotActive => "AGENT_NOT_ACTIVE",
    CredentialNotFound => "CREDENTIAL_NOT_FOUND",
    CredentialRevoked => "CREDENTIAL_REVOKED",
    CredentialAlreadyRevoked => "CREDENTIAL_ALREADY_REVOKED",
    KeyNotFound => "KEY_NOT_FOUND",
    KeyAlreadyRegistered => "KEY_ALREADY_REGISTERED",
    KeyLimitExceeded => "KEY_LIMIT_EXCEEDED",
    OasfRecordUnavailable => "OASF_RECORD_UNAVAILABLE",
    AgentCardUnavailable => "AGENT_CARD_UNAVAILABLE",
    StatusListNotFound => "STATUS_LIST_NOT_FOUND",
    DidDocumentNotHere => "DID_DOCUMENT_NOT_HERE",
    TrustPolicyNotFound => "TRUST_POLICY_NOT_FOUND",
    TrustPolicyLimit => "TRUST_POLICY_LIMIT",
    PolicyTooBroad => "POLICY_TOO_BROAD",
    TargetRequired => "TARGET_REQUIRED",
    InvalidTarget => "INVALID_TARGET",
    InvalidScope => "INVALID_SCOPE",
    CrossTenantDelegation => "CROSS_TENANT_DELEGATION",
    ScopeExceedsDelegator => "SCOPE_EXCEEDS_DELEGATOR",
    DelegationDepthExceeded => "DELEGATION_DEPTH_EXCEEDED",
    DelegationCycle => "DELEGATION_CYCLE",
    DelegationNotFound => "DELEGATION_NOT_FOUND",
    DelegationTokenInvalid => "DELEGATION_TOKEN_INVALID",
    DelegationNotBound => "DELEGATION_NOT_BOUND",
    DelegationRevoked => "DELEGATION_REVOKED",
    DelegationExpired => "DELEGATION_EXPIRED",
    ActorTokenInvalid => "ACTOR_TOKEN_INVALID",
    FederationPartnerNotFound => "FEDERATION_PARTNER_NOT_FOUND",
    FederationPartnerConflict => "FEDERATION_PARTNER_CONFLICT",
    FederationPartnerLimit => "FEDERATION_PARTNER_LIMIT",
    FederationPartnerSuspended => "FEDERATION_PARTNER_SUSPENDED",
    FederationPartnerExpired => "FEDERATION_PARTNER_EXPIRED",
    FederationOrgNotAllowed => "FEDERATION_ORG_NOT_ALLOWED",
    UnknownFederationIssuer => "UNKNOWN_FEDERATION_ISSUER",
    IssuerMismatch => "ISSUER_MISMATCH",
    WrongTokenType => "WRONG_TOKEN_TYPE",
    JwksUnreachable => "JWKS_UNREACHABLE",
    // A partner token that does not verify (`federation::VerifyError::code`, which is
    // `jose::VerifyError::code` or KEYS_UNAVAILABLE). KID_MISSING, SUBJECT_MISMATCH and
    // CLAIM_MISSING answer to options the partner rules do not set; they are listed so that
    // every code of the JOSE core has its name here.
    TokenTooLarge => "TOKEN_TOO_LARGE",
    TokenMalformed => "TOKEN_MALFORMED",
    AlgNotAllowed => "ALG_NOT_ALLOWED",
    CritUnsupported => "CRIT_UNSUPPORTED",
    UnknownKid => "UNKNOWN_KID",
    KeyAlgMismatch => "KEY_ALG_MISMATCH",
    NoSuitableKey => "NO_SUITABLE_KEY",
    KidRequired => "KID_REQUIRED",
    KidMissing => "KID_MISSING",
    SignatureInvalid => "SIGNATURE_INVALID",
    ExpirationMissing => "EXPIRATION_MISSING",
    ClaimInvalid => "CLAIM_INVALID",
    ClaimMissing => "CLAIM_MISSING",
    SubjectMismatch => "SUBJECT_MISMATCH",
    TokenExpired => "TOKEN_EXPIRED",
    TokenNotYetValid => "TOKEN_NOT_YET_VALID",
    TokenIssuedInFuture => "TOKEN_ISSUED_IN_FUTURE",
    AudienceMismatch => "AUDIENCE_MISMATCH",
    KeysUnavailable => "KEYS_UNAVAILABLE",
    BadgeMalformed => "BADGE_MALFORMED",
    BadgeUnsupportedType => "BADGE_UNSUPPORTED_TYPE",
    BadgeIssuerUnknown => "BADGE_ISSUER_UNKNOWN",
    BadgeKeyUnknown => "BADGE_KEY_UNKNOWN",
    BadgeSignatureInvalid => "BADGE_SIGNATURE_INVALID",
    BadgeNotYetValid => "BADGE_NOT_YET_VALID",
    BadgeExpired => "BADGE_EXPIRED",
    BadgeSubjectUnknown => "BADGE_SUBJECT_UNKNOWN",
    BadgeSubjectDeactivated => "BADGE_SUBJECT_DEACTIVATED",
    BadgeSubjectNotActive => "BADGE_SUBJECT_NOT_ACTIVE",
    WebhookNotFound => "WEBHOOK_NOT_FOUND",
    WebhookDeliveryNotFound => "WEBHOOK_DELIVERY_NOT_FOUND",
    AssetNotFound => "ASSET_NOT_FOUND",
    WebhookLimitExceeded => "WEBHOOK_LIMIT_EXCEEDED",
    WebhookUrlInvalid => "WEBHOOK_URL_INVALID",
    WebhookUrlNotHttps => "WEBHOOK_URL_NOT_HTTPS",
    WebhookUrlForbidden => "WEBHOOK_URL_FORBIDDEN",
    WebhookUrlCredentials => "WEBHOOK_URL_CREDENTIALS",
    WebhookUrlUnresolvable => "WEBHOOK_URL_UNRESOLVABLE",
    WebhookUnknownEvent => "WEBHOOK_UNKNOWN_EVENT",
    WebhookEventsEmpty => "WEBHOOK_EVENTS_EMPTY",
    ShuttingDown => "SHUTTING_DOWN",
    StoreUnavailable => "STORE_UNAVAILABLE",
    InternalServerError => "INTERNAL_SERVER_ERROR",
}

impl ErrorCode {
    /// The code named `name` (a code another crate reports by name, e.g. the federation
    /// verifier's).
    pub(crate) fn parse(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_by_name() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), s);
        }
        assert_eq!(Scope::parse("agents:delete"), None);
        assert!(serde_json::from_str::<Scope>("\"admin\"").is_err());
        assert_eq!(
            names_of(&[Scope::AuditRead, Scope::AgentsRead, Scope::AgentsRead]),
            vec!["agents:read", "audit:read"]
        );
        assert_eq!(
            scopes_of(&["agents:read".into(), "unknown:x".into()]),
            vec![Scope::AgentsRead]
        );
    }

    #[test]
    fn error_codes_are_distinct_screaming_snake_names() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let n = c.as_str();
            assert!(seen.insert(n), "{n} twice");
            assert!(
                n.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'),
                "{n}"
            );
        }
    }
}
