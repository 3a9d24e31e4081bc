//! Who is calling. Every API route but health and metrics needs a token (see
//! [`crate::tokens`]); reading needs `viewer`, and changing anything (any method but GET and
//! HEAD) needs `pilot`, so a crew's phone can never edit a geofence or command a vehicle
//! whatever route it finds. Wrong tokens are counted per address and an address that keeps
//! guessing waits (429).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use trellis_web::auth::{bearer, FailedSignIns};
use trellis_web::ApiError;

use crate::tokens::{Role, TokenBook, TokenInfo};

/// Wrong tokens an address may try at once, and how often it gets another try.
const GUESS_BURST: u32 = 10;
const GUESS_REFILL: Duration = Duration::from_secs(6);

/// What the auth layer needs.
#[derive(Clone)]
pub struct Auth {
    pub book: Arc<TokenBook>,
    failures: Arc<FailedSignIns>,
}

impl Auth {
    pub fn new(book: Arc<TokenBook>) -> Auth {
        Auth {
            book,
            failures: Arc::new(FailedSignIns::new(GUESS_BURST, GUESS_REFILL)),
        }
    }
}

/// The caller a request was authenticated as; handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<TokenInfo>);

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {role} role; this token ({}) is a {}",
                self.0.name, self.0.role
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("this needs a token"))
    }
}

/// The role a request needs by its method.
fn needed(method: &Method) -> Role {
    if method == Method::GET || method == Method::HEAD {
        Role::Viewer
    } else {
        Role::Pilot
    }
}

/// Middleware on every protected route: checks the token and the role, and hands the
/// handler a [`Caller`].
pub async fn require_token(
    State(auth): State<Auth>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
    let Some(secret) = bearer(&parts) else {
        return Err(ApiError::unauthorized(
            "this needs a token: sign in, or send Authorization: Bearer … \
             (edge-daemon token create makes one)",
        ));
    };
    let now = Instant::now();
    if let Err(wait) = auth.failures.check(ip, now) {
        return Err(ApiError::too_many_requests(
            format!("too many wrong tokens from {ip}; try again in {wait} s"),
            wait,
        ));
    }
    let Some(token) = auth.book.check_fresh(&secret).await else {
        auth.failures.failed(ip, now);
        tracing::warn!(%ip, path = %parts.uri.path(), "refused an unknown or revoked token");
        return Err(ApiError::unauthorized("unknown or revoked token"));
    };
    let caller = Caller(token);
    caller.require(needed(&parts.method))?;
    parts.extensions.insert(caller);
    Ok(next.run(Request::from_parts(parts, body)).await)
}
