//! [`DomainError`]: why an operation of the domain layer was refused or failed. It says *what
//! kind* of refusal it is and which stable [`ErrorCode`] names it; the HTTP layer alone turns
//! kinds into statuses and bodies (`http::error`), so no rule here knows about HTTP.

use serde_json::Value;
use storage::StoreError;

use super::vocab::{ErrorCode, Scope};

/// An OAuth 2.0 error (RFC 6749 §5.2, RFC 7009, RFC 7662, RFC 8693 §2.2.2) of the token,
/// introspection, revocation and token-exchange endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OAuthKind {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
    ServerError,
}

impl OAuthKind {
    /// The RFC's error name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OAuthKind::InvalidRequest => "invalid_request",
            OAuthKind::InvalidClient => "invalid_client",
            OAuthKind::InvalidGrant => "invalid_grant",
            OAuthKind::UnauthorizedClient => "unauthorized_client",
            OAuthKind::UnsupportedGrantType => "unsupported_grant_type",
            OAuthKind::InvalidScope => "invalid_scope",
            OAuthKind::InvalidTarget => "invalid_target",
            OAuthKind::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthKind::ServerError => "server_error",
        }
    }
}

/// Why a domain operation did not happen. Messages are safe to show to the caller; internals
/// (store errors, signing failures) are logged where they happen and never carried here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DomainError {
    /// The request is malformed or a value is out of bounds; nothing was changed.
    #[error("{message}")]
    Invalid {
        code: ErrorCode,
        message: String,
        details: Option<Value>,
    },
    /// The caller is not (or no longer) authenticated.
    #[error("A valid Bearer token is required to access this resource ({reason}).")]
    Unauthenticated { reason: String },
    /// The caller is authenticated but may not do this.
    #[error("{message}")]
    Forbidden {
        code: ErrorCode,
        message: String,
        details: Option<Value>,
    },
    /// No such object for this caller (also: another tenant's object).
    #[error("{message}")]
    NotFound { code: ErrorCode, message: String },
    /// The object's state does not allow the change (a duplicate, a limit, a one-way status).
    #[error("{message}")]
    Conflict {
        code: ErrorCode,
        message: String,
        details: Option<Value>,
    },
    /// The object existed and is gone for good (a decommissioned agent's public artifacts).
    #[error("{message}")]
    Gone { code: ErrorCode, message: String },
    /// The request is well-formed but what it refers to cannot be used (a partner's token
    /// that does not verify, a key source that cannot be read, a badge that fails).
    #[error("{message}")]
    Unprocessable {
        code: ErrorCode,
        message: String,
        details: Option<Value>,
    },
    /// Too many requests of this kind; retry after `retry_after` seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// A tier limit was hit (`429`): the organization's requests a minute or tokens a month.
    #[error("{message}")]
    Limited {
        code: ErrorCode,
        message: String,
        retry_after: u64,
        /// What the `X-RateLimit-*` headers say.
        rate: Option<crate::app::usage::RateInfo>,
    },
    /// An OAuth endpoint's refusal, with the predecessor's code for its JSON routes.
    #[error("{description}")]
    OAuth {
        kind: OAuthKind,
        description: String,
        code: ErrorCode,
        retry_after: Option<u64>,
        /// The client tried HTTP Basic (RFC 6749 asks for a matching challenge).
        basic: bool,
    },
    /// The node cannot serve this now (shutting down, store unreadable).
    #[error("{message}")]
    Unavailable { code: ErrorCode, message: String },
    /// Something failed that is not the caller's doing (already logged).
    #[error("An unexpected error occurred. Please try again later.")]
    Internal,
}

/// The result of a domain operation.
pub(crate) type Outcome<T> = Result<T, DomainError>;

impl DomainError {
    /// The stable code of this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            DomainError::Invalid { code, .. }
            | DomainError::Forbidden { code, .. }
            | DomainError::NotFound { code, .. }
            | DomainError::Conflict { code, .. }
            | DomainError::Gone { code, .. }
            | DomainError::Unprocessable { code, .. }
            | DomainError::OAuth { code, .. }
            | DomainError::Limited { code, .. }
            | DomainError::Unavailable { code, .. } => *code,
            DomainError::Unauthenticated { .. } => ErrorCode::Unauthorized,
            DomainError::RateLimited { .. } => ErrorCode::RateLimited,
            DomainError::Internal => ErrorCode::InternalServerError,
        }
    }

    /// The details object, if any.
    pub(crate) fn details(&self) -> Option<&Value> {
        match self {
            DomainError::Invalid { details, .. }
            | DomainError::Forbidden { details, .. }
            | DomainError::Conflict { details, .. }
            | DomainError::Unprocessable { details, .. } => details.as_ref(),
            _ => None,
        }
    }

    /// A field of the request is invalid: `VALIDATION_ERROR` naming the field.
    pub(crate) fn validation(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        DomainError::Invalid {
            code: ErrorCode::ValidationError,
            message: format!("{field}: {reason}"),
            details: Some(serde_json::json!({ "field": field, "reason": reason })),
        }
    }

    /// A 400-class refusal with its own code.
    pub(crate) fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn unauthenticated(reason: impl Into<String>) -> Self {
        DomainError::Unauthenticated {
            reason: reason.into(),
        }
    }

    pub(crate) fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::Forbidden {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::Conflict {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn gone(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::Gone {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn unprocessable(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::Unprocessable {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds details to an error that carries them (others are returned unchanged).
    pub(crate) fn with_details(mut self, value: Value) -> Self {
        match &mut self {
            DomainError::Invalid { details, .. }
            | DomainError::Forbidden { details, .. }
            | DomainError::Conflict { details, .. }
            | DomainError::Unprocessable { details, .. } => *details = Some(value),
            _ => {}
        }
        self
    }

    /// "Too many {what}; retry in {wait} s." (`what` says whose).
    pub(crate) fn rate_limited(what: &str, retry_after: u64) -> Self {
        DomainError::RateLimited {
            message: format!("Too many {what}; retry in {retry_after} s."),
            retry_after,
        }
    }

    /// An OAuth error with the code its JSON (predecessor) route shows.
    pub(crate) fn oauth(kind: OAuthKind, code: ErrorCode, description: impl Into<String>) -> Self {
        DomainError::OAuth {
            kind,
            description: description.into(),
            code,
            retry_after: None,
            basic: false,
        }
    }

    /// `invalid_client` (RFC 6749 §5.2); `basic`: the client tried HTTP Basic, so the answer
    /// carries a matching challenge.
    pub(crate) fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        DomainError::OAuth {
            kind: OAuthKind::InvalidClient,
            description: description.into(),
            code: ErrorCode::Unauthorized,
            retry_after: None,
            basic,
        }
    }

    /// An OAuth endpoint's `429` (`temporarily_unavailable` with `Retry-After`).
    pub(crate) fn oauth_throttled(description: impl Into<String>, retry_after: u64) -> Self {
        DomainError::OAuth {
            kind: OAuthKind::TemporarilyUnavailable,
            description: description.into(),
            code: ErrorCode::RateLimited,
            retry_after: Some(retry_after),
            basic: false,
        }
    }

    pub(crate) fn missing_scope(scope: Scope) -> Self {
        DomainError::Forbidden {
            code: ErrorCode::AuthorizationError,
            message: format!(
                "This action needs the `{scope}` scope, which the token does not carry."
            ),
            details: Some(serde_json::json!({ "requiredScope": scope.as_str() })),
        }
    }

    /// The caller tried to manage an agent holding scopes it does not hold itself.
    pub(crate) fn agent_protected(missing: &[Scope]) -> Self {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        DomainError::Forbidden {
            code: ErrorCode::AgentProtected,
            message: format!(
                "This agent holds scopes you do not hold ({}); only an agent holding all of its scopes may manage it.",
                list.join(", ")
            ),
            details: Some(serde_json::json!({ "missingScopes": list })),
        }
    }

    /// The change would leave an organization without an admin.
    pub(crate) fn last_admin() -> Self {
        DomainError::conflict(
            ErrorCode::LastAdmin,
            "This is the organization's last admin (an active agent holding every scope the organization grants); make another agent an admin first.",
        )
    }

    pub(crate) fn scope_escalation(message: impl Into<String>) -> Self {
        DomainError::forbidden(ErrorCode::ScopeEscalation, message)
    }

    pub(crate) fn agent_not_found() -> Self {
        // The same body for a missing agent and another tenant's agent: existence never leaks.
        DomainError::not_found(
            ErrorCode::AgentNotFound,
            "Agent with the specified ID was not found.",
        )
    }

    pub(crate) fn credential_not_found() -> Self {
        DomainError::not_found(
            ErrorCode::CredentialNotFound,
            "Credential with the specified ID was not found.",
        )
    }

    pub(crate) fn org_not_found() -> Self {
        DomainError::not_found(
            ErrorCode::OrgNotFound,
            "Organization with the specified ID was not found.",
        )
    }

    pub(crate) fn agent_decommissioned() -> Self {
        DomainError::forbidden(
            ErrorCode::AgentDecommissioned,
            "The agent has been decommissioned; it cannot be changed or given credentials, keys or trust policies.",
        )
    }

    /// The agent's organization is not active: nothing new is attached to its agents.
    pub(crate) fn org_not_active() -> Self {
        DomainError::forbidden(
            ErrorCode::OrgNotActive,
            "The organization is not active; reactivate it first.",
        )
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => DomainError::Unavailable {
                code: ErrorCode::ShuttingDown,
                message: "The node is shutting down; retry against another node or after restart."
                    .into(),
            },
            StoreError::Unavailable(reason) => {
                tracing::error!(%reason, "store unavailable");
                DomainError::Unavailable {
                    code: ErrorCode::StoreUnavailable,
                    message: "The store is unavailable (its database cannot be reached); nothing was changed or acknowledged. Retry shortly.".into(),
                }
            }
            other => {
                // Internals are logged, never sent.
                tracing::error!(error = %other, "store error");
                DomainError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let e = DomainError::validation("email", "must look like name@domain");
        assert_eq!(e.code(), ErrorCode::ValidationError);
        assert_eq!(e.to_string(), "email: must look like name@domain");
        assert_eq!(e.details().unwrap()["field"], "email");
    }

    #[test]
    fn store_errors_say_nothing_of_internals() {
        let e = DomainError::from(StoreError::Engine("disk on fire at /var/x".into()));
        assert!(!e.to_string().contains("disk"));
        assert_eq!(e.code(), ErrorCode::InternalServerError);
        assert_eq!(
            DomainError::from(StoreError::Closed).code(),
            ErrorCode::ShuttingDown
        );
    }
}
