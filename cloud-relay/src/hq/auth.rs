//! Who is calling: the bearer token's org and role, checked on every request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{blocking, ApiError, HqState};
use crate::store::hq::{Role, TokenInfo};

/// The authenticated caller. Extracting it fails with 401 for a missing or unknown token.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenInfo);

impl Caller {
    /// The caller's own org, if `org` is it. Any other org, existing or not, is "not
    /// found": a token must not be able to probe which orgs exist.
    pub fn org(&self, org: &str) -> Result<String, ApiError> {
        if self.0.org == org {
            Ok(org.to_string())
        } else {
            Err(ApiError::not_found(format!("no organization {org:?}")))
        }
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; the token has {}",
                role.as_str(),
                self.0.role.as_str()
            )))
        }
    }
}

/// The token from `Authorization: Bearer …`, else from `?access_token=…` (browsers cannot
/// set headers on a WebSocket).
fn secret(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        return h
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|s| s.trim().to_string());
    }
    parts.uri.query()?.split('&').find_map(|kv| {
        kv.strip_prefix("access_token=")
            .map(|t| t.trim().to_string())
    })
}

impl FromRequestParts<HqState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &HqState) -> Result<Self, ApiError> {
        let secret = secret(parts).ok_or_else(|| {
            ApiError::unauthorized("a bearer token is required (cloud-relay token create)")
        })?;
        if secret.is_empty() || secret.len() > 256 {
            return Err(ApiError::unauthorized("unknown token"));
        }
        let token = blocking(&state.store, move |s| s.token(&secret)).await?;
        token
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }
}
