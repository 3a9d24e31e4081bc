//! Command and control: commands, parameters, missions and missions planned from fields,
//! approving HQ's proposals. These routes are declared, described and checked now (the role, the vehicle,
//! the body) so that clients and the OpenAPI document have their shape; the daemon does not
//! yet speak the MAVLink protocols behind them, so a valid request is answered
//! `501 not_implemented`, never accepted and silently dropped. There are no commands yet, so
//! `GET /api/v1/commands/{id}` finds none.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use trellis_web::openapi::{EditRefusals, NotYet, ReadRefusals};
use trellis_web::{Json as JsonBody, Path};
use utoipa::ToSchema;

use super::{ApiError, AppState};

const NOT_YET: &str = "this station does not send commands, missions or parameters to \
    vehicles yet; use a ground control station through the router";

/// What a command asks a vehicle to do.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Arm,
    Disarm,
    Takeoff,
    Land,
    Rtl,
    /// Set the flight mode named in `mode`.
    Mode,
    /// Fly to `lat`, `lon`, `alt_m`.
    Goto,
    /// Change speed to `speed_mps`.
    Speed,
    StartMission,
    Pause,
    Continue,
    Reboot,
}

/// A command for a vehicle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    command: CommandKind,
    /// For `mode`: the mode's name (`LOITER`, `AUTO`, …).
    mode: Option<String>,
    /// For `goto`.
    lat: Option<f64>,
    lon: Option<f64>,
    /// For `takeoff` and `goto`: metres above home.
    alt_m: Option<f64>,
    /// For `speed`.
    speed_mps: Option<f64>,
}

/// A command and its outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandView {
    id: String,
    vehicle: u8,
    command: CommandKind,
    /// `pending`, `in_progress`, `accepted`, `denied`, `failed`, `unsupported`, `timed_out`.
    outcome: String,
}

impl CommandRequest {
    /// The field a command of this kind needs, if it lacks it or holds a value that cannot be.
    fn check(&self) -> Result<(), ApiError> {
        let need = |field: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ApiError::invalid(field, "missing or out of range"))
            }
        };
        let finite = |v: Option<f64>| v.is_some_and(f64::is_finite);
        match self.command {
            CommandKind::Mode => need(
                "mode",
                self.mode.as_deref().is_some_and(|m| !m.trim().is_empty()),
            ),
            CommandKind::Goto => {
                need("lat", self.lat.is_some_and(|v| (-90.0..=90.0).contains(&v)))?;
                need(
                    "lon",
                    self.lon.is_some_and(|v| (-180.0..=180.0).contains(&v)),
                )?;
                need("alt_m", finite(self.alt_m))
            }
            CommandKind::Takeoff => need("alt_m", self.alt_m.is_some_and(|a| a > 0.0)),
            CommandKind::Speed => need("speed_mps", self.speed_mps.is_some_and(|s| s > 0.0)),
            _ => Ok(()),
        }
    }
}

/// Sends a command to a vehicle (needs a pilot). It will answer with the command's id at
/// once; `GET /api/v1/commands/{id}` then gives its outcome.
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/commands", tag = "control",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body = CommandRequest,
    responses((status = 202, description = "sent; the outcome follows", body = CommandView),
        EditRefusals, NotYet))]
pub async fn command(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CommandRequest>,
) -> Result<Json<CommandView>, ApiError> {
    super::vehicles::find(&s, &id)?;
    request.check()?;
    Err(ApiError::not_implemented(NOT_YET))
}

/// A command and its outcome.
#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "control",
    params(("id" = String, Path)),
    responses((status = 200, description = "the command", body = CommandView), ReadRefusals))]
pub async fn command_outcome(Path(id): Path<String>) -> Result<Json<CommandView>, ApiError> {
    Err(ApiError::not_found(format!("no command {id:?}")))
}

/// A vehicle's parameters, as last read from it.
#[utoipa::path(get, path = "/api/v1/vehicles/{id}/params", tag = "control",
    params(("id" = String, Path, description = "system id or fleet name")),
    responses((status = 200, description = "the parameters, by name",
        body = std::collections::BTreeMap<String, f64>), ReadRefusals, NotYet))]
pub async fn params(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<std::collections::BTreeMap<String, f64>>, ApiError> {
    super::vehicles::find(&s, &id)?;
    Err(ApiError::not_implemented(NOT_YET))
}

/// Sets parameters on a vehicle (needs a pilot), each read back to verify it.
#[utoipa::path(put, path = "/api/v1/vehicles/{id}/params", tag = "control",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body(content = std::collections::BTreeMap<String, f64>,
        description = "the parameters to set, by name"),
    responses((status = 200, description = "set and read back",
        body = std::collections::BTreeMap<String, f64>), EditRefusals, NotYet))]
pub async fn set_params(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(values): JsonBody<std::collections::BTreeMap<String, f64>>,
) -> Result<Json<std::collections::BTreeMap<String, f64>>, ApiError> {
    super::vehicles::find(&s, &id)?;
    if values.is_empty() {
        return Err(ApiError::invalid("body", "name at least one parameter"));
    }
    if let Some(name) = values
        .keys()
        .find(|n| n.is_empty() || n.len() > 16 || !n.is_ascii())
    {
        return Err(ApiError::invalid(
            "body",
            format!("{name:?} is not a MAVLink parameter name (1 to 16 ASCII characters)"),
        ));
    }
    Err(ApiError::not_implemented(NOT_YET))
}

/// A pilot's decision on a mission HQ proposed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `approve` uploads it to its vehicle; `reject` records the refusal for HQ.
    decision: DecisionKind,
    /// Why, for HQ.
    note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    Approve,
    Reject,
}

/// Approves or rejects a mission HQ proposed (needs a pilot).
#[utoipa::path(post, path = "/api/v1/missions/proposals/{key}/decision", tag = "control",
    params(("key" = String, Path)), request_body = Decision,
    responses((status = 200, description = "recorded", body = crate::store::Record),
        EditRefusals, NotYet))]
pub async fn decide(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(decision): JsonBody<Decision>,
) -> Result<Json<crate::store::Record>, ApiError> {
    if decision.note.as_ref().is_some_and(|n| n.len() > 500) {
        return Err(ApiError::invalid("note", "at most 500 bytes"));
    }
    let reader = s.reader.clone();
    let proposals = tokio::task::spawn_blocking(move || reader.records("proposals"))
        .await
        .map_err(ApiError::internal)??;
    if !proposals.iter().any(|p| p.key == key) {
        return Err(ApiError::not_found(format!("no proposal {key:?}")));
    }
    Err(ApiError::not_implemented(match decision.decision {
        DecisionKind::Approve => {
            "approving uploads the mission to its vehicle, which this station does not do yet"
        }
        DecisionKind::Reject => {
            "rejecting is recorded with command and control, which this station does not have yet"
        }
    }))
}

/// A mission as the station keeps it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredMission {
    key: String,
    /// The field it covers, if it was planned from one.
    field: Option<String>,
    /// Waypoints and commands, in MAVLink mission order.
    items: usize,
}

/// The station's missions: planned, uploaded, flown.
#[utoipa::path(get, path = "/api/v1/missions", tag = "control",
    responses((status = 200, description = "the missions", body = Vec<StoredMission>),
        ReadRefusals, NotYet))]
pub async fn missions() -> Result<Json<Vec<StoredMission>>, ApiError> {
    Err(ApiError::not_implemented(NOT_YET))
}

/// How to cover a field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// Metres above home.
    #[schema(minimum = 1, maximum = 500)]
    alt_m: f64,
    #[schema(minimum = 0.5, maximum = 30)]
    speed_mps: f64,
    /// Distance between passes; the vine row spacing for spraying.
    #[schema(minimum = 0.5, maximum = 200)]
    row_spacing_m: f64,
    /// Direction of the passes, degrees from north; default the field's longest edge (how
    /// the vines are planted).
    #[schema(minimum = 0, maximum = 360)]
    heading_deg: Option<f64>,
}

/// Plans a mission covering a field (needs a pilot): a lawnmower pattern along the rows.
#[utoipa::path(post, path = "/api/v1/fields/{key}/plan", tag = "control",
    params(("key" = String, Path)), request_body = PlanRequest,
    responses((status = 201, description = "planned", body = StoredMission), EditRefusals, NotYet))]
pub async fn plan(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<PlanRequest>,
) -> Result<Json<StoredMission>, ApiError> {
    let within = |field: &str, v: f64, lo: f64, hi: f64| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(ApiError::invalid(field, format!("between {lo} and {hi}")))
        }
    };
    within("alt_m", request.alt_m, 1.0, 500.0)?;
    within("speed_mps", request.speed_mps, 0.5, 30.0)?;
    within("row_spacing_m", request.row_spacing_m, 0.5, 200.0)?;
    if let Some(h) = request.heading_deg {
        within("heading_deg", h, 0.0, 360.0)?;
    }
    let reader = s.reader.clone();
    let fields = tokio::task::spawn_blocking(move || reader.records("fields"))
        .await
        .map_err(ApiError::internal)??;
    if !fields.iter().any(|f| f.key == key) {
        return Err(ApiError::not_found(format!("no field {key:?}")));
    }
    Err(ApiError::not_implemented(NOT_YET))
}
