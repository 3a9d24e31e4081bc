//! Who is calling: the bearer token's org and role, checked on every request.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use trellis_web::auth::{bearer, MAX_SECRET_LEN};

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

impl FromRequestParts<HqState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &HqState) -> Result<Self, ApiError> {
        let secret = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("a bearer token is required (cloud-relay token create)")
        })?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
        let now = Instant::now();
        if let Err(wait) = state.failures.check(ip, now) {
            return Err(ApiError::too_many_requests(
                format!("too many wrong tokens from {ip}; try again in {wait} s"),
                wait,
            ));
        }
        let token = if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
            None
        } else {
            blocking(&state.store, move |s| s.token(&secret)).await?
        };
        token.map(Caller).ok_or_else(|| {
            state.failures.failed(ip, now);
            ApiError::unauthorized("unknown token")
        })
    }
}
