//! Bearer authentication of `/api/v1` routes, as an extractor: the `Authorization` header is
//! read here, and `app::bearer` decides whether it authenticates a [`Caller`]. The organization
//! of every request comes from there and only there.

use std::net::SocketAddr;

use warp::{Filter, Rejection};

use crate::app::bearer::Presented;
use crate::app::{AppState, Caller};
use crate::http::extract::with_state;

/// The client's IP address as recorded in the audit log and used as a throttling key.
pub(crate) fn client_ip(addr: Option<SocketAddr>) -> Option<String> {
    addr.map(|a| a.ip().to_string())
}

/// Extracts the [`Caller`] or rejects with 401 (audited within the failure bound), or 429 when
/// the address is over its failure budget.
pub(crate) fn bearer(
    state: AppState,
) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(crate::http::extract::client_addr())
        .and(with_state(state))
        .and_then(
            |header: Option<String>, addr: Option<SocketAddr>, state: AppState| async move {
                crate::app::bearer::authenticate(&state, presented(&header), client_ip(addr))
                    .await
                    .map_err(Rejection::from)
            },
        )
}

fn presented(header: &Option<String>) -> Presented<'_> {
    match header.as_deref().map(|h| h.split_once(' ')) {
        None => Presented::Nothing,
        Some(Some((scheme, t))) if scheme.eq_ignore_ascii_case("bearer") => {
            Presented::Bearer(t.trim())
        }
        Some(_) => Presented::OtherScheme,
    }
}

/// An active bearer token itself, and the client's address, for the routes whose operation
/// depends on the token (a delegation grant: its chain, credential and lifetime).
pub(crate) struct TokenAuth {
    pub(crate) token: crate::app::bearer::ActiveToken,
    pub(crate) client: Option<String>,
}

/// Like [`bearer`], extracting the [`TokenAuth`].
pub(crate) fn bearer_token(
    state: AppState,
) -> impl Filter<Extract = (TokenAuth,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(crate::http::extract::client_addr())
        .and(with_state(state))
        .and_then(
            |header: Option<String>, addr: Option<SocketAddr>, state: AppState| async move {
                let client = client_ip(addr);
                crate::app::bearer::authenticate_token(&state, presented(&header), client.clone())
                    .await
                    .map(|token| TokenAuth { token, client })
                    .map_err(Rejection::from)
            },
        )
}
