//! `/api/v1/vehicles/{id}/signing`: a vehicle's MAVLink 2 signing key, installed and removed
//! by a fleet admin (`edge-daemon signing enable|disable`), and what the station's checks of
//! its frames found. The key is answered once, when it is made; the store keeps it and never
//! serves it again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use trellis_web::openapi::{EditRefusals, ReadRefusals};
use trellis_web::{Json as JsonBody, Path};
use utoipa::ToSchema;

use super::{auth, control, ApiError, AppState};
use crate::gcs::{Action, SigningOp};
use crate::signing::Key;
use crate::store::CommandRow;
use crate::tokens::Role;
use crate::vehicle::SigningView;

/// How to make the key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    /// A passphrase the key is derived from (its SHA-256, as MAVProxy and QGroundControl do),
    /// so the same passphrase configures a ground station; without one the key is random.
    passphrase: Option<String>,
}

/// The installation under way, and the key, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enabled {
    command: CommandRow,
    /// The 32-byte key in hex, for the ground stations that will command this vehicle.
    key: String,
}

/// Makes a signing key for a vehicle and installs it with SETUP_SIGNING (needs an admin).
/// From then on the station signs what it sends the vehicle and drops unsigned or badly
/// signed frames addressed to it; the command is accepted once the vehicle's own frames
/// arrive signed with the key.
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/signing", tag = "signing",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body = EnableRequest,
    responses((status = 202, description = "stored and being installed", body = Enabled),
        EditRefusals))]
pub async fn enable(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<EnableRequest>,
) -> Result<(StatusCode, Json<Enabled>), ApiError> {
    caller.require(Role::Admin)?;
    let vehicle = super::vehicles::find(&s, &id)?;
    let key = match request.passphrase.as_deref() {
        Some(p) if p.len() < 8 => {
            return Err(ApiError::invalid("passphrase", "at least 8 characters"));
        }
        Some(p) => Key::from_passphrase(p),
        None => Key::random().map_err(|_| ApiError::internal("no randomness for a key"))?,
    };
    let hex = key.hex();
    let action = Action::Signing(SigningOp::Install(key));
    let (status, Json(command)) = control::start(&s, &caller, vehicle.sysid, action).await?;
    Ok((status, Json(Enabled { command, key: hex })))
}

/// Turns a vehicle's signing off (needs an admin): SETUP_SIGNING with an all-zero key, and
/// the key forgotten.
#[utoipa::path(delete, path = "/api/v1/vehicles/{id}/signing", tag = "signing",
    params(("id" = String, Path, description = "system id or fleet name")),
    responses((status = 202, description = "stored and being removed", body = CommandRow),
        EditRefusals))]
pub async fn disable(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    caller.require(Role::Admin)?;
    let vehicle = super::vehicles::find(&s, &id)?;
    if !vehicle.signing.on {
        return Err(ApiError::conflict(format!(
            "{} does not sign",
            vehicle.name
        )));
    }
    control::start(
        &s,
        &caller,
        vehicle.sysid,
        Action::Signing(SigningOp::Remove),
    )
    .await
}

/// Whether a vehicle signs, and what the checks of the frames to and from it found.
#[utoipa::path(get, path = "/api/v1/vehicles/{id}/signing", tag = "signing",
    params(("id" = String, Path, description = "system id or fleet name")),
    responses((status = 200, description = "signing", body = SigningView), ReadRefusals))]
pub async fn status(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SigningView>, ApiError> {
    Ok(Json(super::vehicles::find(&s, &id)?.signing.clone()))
}
