//! Command and control: commands, missions and missions planned from fields, approving HQ's
//! proposals (parameters are in `params.rs`).
//!
//! Commands and mission transfers are stored (with who asked) before they go to the vehicle,
//! answered with their id at once, their outcome in `GET /api/v1/commands/{id}`, on the
//! stream and at HQ. Missions are records, planned from fields or given as items; HQ's
//! proposals reach a vehicle only through a pilot's decision here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use trellis_web::openapi::{EditRefusals, ReadRefusals};
use trellis_web::{Json as JsonBody, Path};
use utoipa::ToSchema;

use super::{auth, ApiError, AppState};
use crate::gcs::{Action, Command, MissionItem, MissionKind, Operation, SendCommand};
use crate::store::{CommandRow, Record};
use crate::vehicle::modes;

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
    /// Read the vehicle's list of `kind`; the items come back in the command's `detail`.
    DownloadMission,
    /// Empty the vehicle's list of `kind`.
    ClearMission,
    /// Make mission item `seq` the current one.
    SetCurrent,
}

/// A command for a vehicle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    command: CommandKind,
    /// For `mode`: the mode's name as QGroundControl shows it (`LOITER`, `AUTO`, `Hold`).
    mode: Option<String>,
    /// For `goto`.
    lat: Option<f64>,
    lon: Option<f64>,
    /// For `takeoff` and `goto`: metres above home.
    alt_m: Option<f64>,
    /// For `speed`.
    speed_mps: Option<f64>,
    /// For `download_mission` and `clear_mission`: `mission` (default), `fence` or `rally`.
    kind: Option<MissionKind>,
    /// For `set_current`.
    seq: Option<u16>,
}

impl CommandRequest {
    /// What to do with `vehicle`, or the field that is missing or cannot be.
    fn resolve(&self, vehicle: &crate::vehicle::VehicleView) -> Result<Action, ApiError> {
        let kind = self.kind.unwrap_or(MissionKind::Mission);
        let mission = |op| Action::Mission {
            kind,
            op,
            mission: None,
        };
        Ok(match self.command {
            CommandKind::DownloadMission => mission(Operation::Download),
            CommandKind::ClearMission => mission(Operation::Clear),
            CommandKind::SetCurrent => Action::Mission {
                kind: MissionKind::Mission,
                op: Operation::SetCurrent(self.seq.ok_or_else(|| {
                    ApiError::invalid("seq", "missing: the mission item to make current")
                })?),
                mission: None,
            },
            _ => Action::Command(self.command(vehicle)?),
        })
    }

    fn command(&self, vehicle: &crate::vehicle::VehicleView) -> Result<Command, ApiError> {
        let bad = |field: &str| ApiError::invalid(field, "missing or out of range");
        // PX4 takes these altitudes above sea level, which the station works out from the
        // vehicle's home: without one it would fly at an altitude nobody asked for.
        let px4_without_home = firmware_of(vehicle) == modes::Firmware::Px4
            && vehicle.home.is_none()
            && matches!(self.command, CommandKind::Takeoff | CommandKind::Goto);
        if px4_without_home {
            return Err(ApiError::conflict(format!(
                "{} has not reported its home position yet; PX4 takes altitudes above sea \
                 level, worked out from home",
                vehicle.name
            )));
        }
        let within = |v: Option<f64>, lo: f64, hi: f64| v.filter(|v| (lo..=hi).contains(v));
        Ok(match self.command {
            CommandKind::Arm => Command::Arm,
            CommandKind::Disarm => Command::Disarm,
            CommandKind::Takeoff => Command::Takeoff {
                alt_m: within(self.alt_m, 0.5, 1_000.0).ok_or_else(|| bad("alt_m"))? as f32,
            },
            CommandKind::Land => Command::Land,
            CommandKind::Rtl => Command::Rtl,
            CommandKind::Mode => {
                let name = self
                    .mode
                    .as_deref()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| bad("mode"))?;
                let firmware = firmware_of(vehicle);
                let (_, custom_mode) = modes::mode_number(firmware, name).ok_or_else(|| {
                    ApiError::invalid(
                        "mode",
                        format!(
                            "{} has no mode {name:?}; it has {}",
                            vehicle.name,
                            modes::names(firmware).join(", ")
                        ),
                    )
                })?;
                Command::Mode {
                    mode: modes::canonical_name(firmware, custom_mode)
                        .unwrap_or(name)
                        .to_string(),
                    custom_mode,
                }
            }
            CommandKind::Goto => Command::Goto {
                lat: within(self.lat, -90.0, 90.0).ok_or_else(|| bad("lat"))?,
                lon: within(self.lon, -180.0, 180.0).ok_or_else(|| bad("lon"))?,
                alt_m: within(self.alt_m, -500.0, 10_000.0).ok_or_else(|| bad("alt_m"))? as f32,
            },
            CommandKind::Speed => Command::Speed {
                speed_mps: within(self.speed_mps, 0.1, 100.0).ok_or_else(|| bad("speed_mps"))?
                    as f32,
            },
            CommandKind::StartMission => Command::StartMission,
            CommandKind::Pause => Command::Pause,
            CommandKind::Continue => Command::Continue,
            CommandKind::Reboot => Command::Reboot,
            CommandKind::DownloadMission | CommandKind::ClearMission | CommandKind::SetCurrent => {
                return Err(ApiError::invalid("command", "a transfer, not a command"));
            }
        })
    }
}

/// The firmware whose mode table applies to a vehicle as the API shows it.
fn firmware_of(v: &crate::vehicle::VehicleView) -> modes::Firmware {
    let autopilot = match v.autopilot {
        "px4" => 12,
        "ardupilot" => 3,
        _ => 0,
    };
    modes::firmware(autopilot, v.vehicle_type)
}

/// Sends a command to a vehicle (needs a pilot). The command and its sender are stored
/// before it goes out; the answer is its id at once, and `GET /api/v1/commands/{id}`, the
/// stream (`commands`) and HQ then give its outcome.
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/commands", tag = "control",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body = CommandRequest,
    responses((status = 202, description = "stored and sent; the outcome follows",
        body = CommandRow), EditRefusals))]
pub async fn command(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CommandRequest>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let vehicle = super::vehicles::find(&s, &id)?;
    let action = request.resolve(&vehicle)?;
    start(&s, &caller, vehicle.sysid, action).await
}

/// A command and where it stands.
#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "control",
    params(("id" = i64, Path, description = "the id its POST answered with")),
    responses((status = 200, description = "the command", body = CommandRow), ReadRefusals))]
pub async fn command_outcome(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<CommandRow>, ApiError> {
    let reader = s.reader.clone();
    tokio::task::spawn_blocking(move || reader.command(id))
        .await
        .map_err(ApiError::internal)??
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no command {id}")))
}

/// A pilot's decision on a mission HQ proposed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `approve` uploads it to its vehicle; `reject` records the refusal for HQ.
    decision: DecisionKind,
    /// Why, for HQ.
    note: Option<String>,
    /// The vehicle to fly it (system id or fleet name), when the proposal names none heard
    /// here, or to fly it with another.
    vehicle: Option<String>,
    /// How to fly a proposal that names a field rather than mission items.
    plan: Option<crate::planner::PlanRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    Approve,
    Reject,
}

/// Approves or rejects a mission HQ proposed (needs a pilot). Nothing HQ proposes reaches a
/// vehicle before this: approving stores the mission (`proposal-<key>`, planned from its
/// field when it names one) and uploads it, as `POST /api/v1/missions/{key}/upload` does.
/// Either way the decision, who made it and why are written into the proposal, which sync
/// takes back to HQ.
#[utoipa::path(post, path = "/api/v1/missions/proposals/{key}/decision", tag = "control",
    params(("key" = String, Path, min_length = 1, max_length = 200)), request_body = Decision,
    responses((status = 200, description = "decided: the proposal as it now is", body = Record),
        EditRefusals))]
pub async fn decide(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(key): Path<String>,
    JsonBody(decision): JsonBody<Decision>,
) -> Result<Json<Record>, ApiError> {
    if decision.note.as_ref().is_some_and(|n| n.len() > 500) {
        return Err(ApiError::invalid("note", "at most 500 bytes"));
    }
    if let Some(plan) = &decision.plan {
        plan.check().map_err(plan_refusal)?;
    }
    let proposal = records(&s, "proposals")
        .await?
        .into_iter()
        .find(|p| p.key == key)
        .ok_or_else(|| ApiError::not_found(format!("no proposal {key:?}")))?;
    let status = proposal.fields.get("status").and_then(|v| v.as_str());
    if status != Some("proposed") {
        return Err(ApiError::conflict(format!(
            "proposal {key:?} is {} already",
            status.unwrap_or("decided")
        )));
    }
    let mut fields = serde_json::Map::new();
    match decision.decision {
        DecisionKind::Reject => {
            fields.insert("status".into(), "rejected".into());
        }
        DecisionKind::Approve => {
            let vehicle = match &decision.vehicle {
                Some(v) => super::vehicles::find(&s, v)
                    .map_err(|_| ApiError::invalid("vehicle", format!("no vehicle {v:?}")))?,
                None => proposed_vehicle(&s, &proposal).ok_or_else(|| {
                    ApiError::invalid(
                        "vehicle",
                        "the proposal names no vehicle this station hears: name one",
                    )
                })?,
            };
            let mission = proposal.fields.get("mission").cloned().unwrap_or_default();
            let field = mission["field"].as_str().map(str::to_string);
            let items: Vec<MissionItem> = match (mission.get("items"), &field) {
                (Some(items), _) => serde_json::from_value(items.clone())
                    .ok()
                    .filter(|i: &Vec<MissionItem>| {
                        !i.is_empty() && i.iter().all(MissionItem::is_sendable)
                    })
                    .ok_or_else(|| {
                        ApiError::conflict("the proposed mission items cannot be flown")
                    })?,
                (None, Some(field_key)) => {
                    let plan = decision.plan.as_ref().ok_or_else(|| {
                        ApiError::invalid(
                            "plan",
                            format!(
                                "how to fly field {field_key:?}: alt_m, speed_mps, row_spacing_m…"
                            ),
                        )
                    })?;
                    let field_record = records(&s, "fields")
                        .await?
                        .into_iter()
                        .find(|f| &f.key == field_key)
                        .ok_or_else(|| {
                            ApiError::conflict(format!("no field {field_key:?} here"))
                        })?;
                    crate::planner::shape_of(&field_record.fields)
                        .and_then(|shape| crate::planner::plan(&shape, plan))
                        .map_err(plan_refusal)?
                        .items
                }
                (None, None) => {
                    return Err(ApiError::conflict(
                        "the proposal has neither items nor a field",
                    ))
                }
            };
            let mission_key = format!("proposal-{key}");
            let mut m = serde_json::Map::new();
            let title = proposal
                .fields
                .get("title")
                .and_then(|t| t.as_str())
                .unwrap_or(&key);
            m.insert("name".into(), title.into());
            m.insert("kind".into(), serde_json::json!(MissionKind::Mission));
            m.insert("items".into(), serde_json::json!(items));
            m.insert("proposal".into(), key.clone().into());
            if let Some(f) = field {
                m.insert("field".into(), f.into());
            }
            store_record(&s, "missions", &mission_key, m).await?;
            let action = Action::Mission {
                kind: MissionKind::Mission,
                op: Operation::Upload(items),
                mission: Some(mission_key.clone()),
            };
            let (_, Json(upload)) = start(&s, &caller, vehicle.sysid, action).await?;
            fields.insert("status".into(), "approved".into());
            fields.insert("mission_key".into(), mission_key.into());
            fields.insert("upload".into(), upload.id.into());
            fields.insert("flown_by".into(), vehicle.name.clone().into());
        }
    }
    fields.insert("decided_by".into(), caller.0.name.clone().into());
    fields.insert("decided_us".into(), s.time.borrow().now_us().into());
    if let Some(note) = decision.note {
        fields.insert("note".into(), note.into());
    }
    Ok(Json(store_record(&s, "proposals", &key, fields).await?))
}

/// The vehicle a proposal names (by autopilot uid), if this station hears it.
fn proposed_vehicle(
    s: &AppState,
    proposal: &Record,
) -> Option<std::sync::Arc<crate::vehicle::VehicleView>> {
    let uid = proposal.fields.get("vehicle")?.get("uid")?.as_str()?;
    let snapshot = s.snapshots.borrow().clone();
    snapshot
        .vehicles
        .iter()
        .find(|v| v.uid.as_deref() == Some(uid))
        .cloned()
}

/// The station's missions.
#[derive(Debug, Serialize, ToSchema)]
pub struct MissionList {
    missions: Vec<Record>,
    /// `after` for the next page; `null` on the last.
    next: Option<String>,
}

/// The station's missions: each a record with a `name`, a `kind` (`mission`, `fence`,
/// `rally`), its `items` in MAVLink order and, if planned from one, its `field`.
#[utoipa::path(get, path = "/api/v1/missions", tag = "control",
    params(trellis_web::page::KeyPageParams),
    responses((status = 200, description = "the missions", body = MissionList), ReadRefusals))]
pub async fn missions(
    State(s): State<AppState>,
    trellis_web::Query(p): trellis_web::Query<trellis_web::page::KeyPageParams>,
) -> Result<Json<MissionList>, ApiError> {
    let (missions, next) = super::records::page(&s, "missions", p).await?;
    Ok(Json(MissionList { missions, next }))
}

/// A mission to keep at the station.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MissionRequest {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// `mission` (default), `fence` or `rally`.
    kind: Option<MissionKind>,
    /// The items in MAVLink order; for ArduPilot item 0 is home, which the vehicle
    /// overwrites.
    #[schema(min_items = 1, max_items = 1000)]
    items: Vec<MissionItem>,
    /// The field it covers.
    field: Option<String>,
}

/// Stores a mission (needs a pilot); synced to HQ like any record.
#[utoipa::path(put, path = "/api/v1/missions/{key}", tag = "control",
    params(("key" = String, Path, min_length = 1, max_length = 200)),
    request_body = MissionRequest,
    responses((status = 200, description = "stored", body = Record), EditRefusals))]
pub async fn put_mission(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(m): JsonBody<MissionRequest>,
) -> Result<Json<Record>, ApiError> {
    if key == "proposals" {
        return Err(ApiError::conflict(
            "\"proposals\" names HQ's proposals; choose another key",
        ));
    }
    if m.name.trim().is_empty() || m.name.len() > 200 {
        return Err(ApiError::invalid("name", "1 to 200 characters"));
    }
    if m.items.is_empty() || m.items.len() > 1000 {
        return Err(ApiError::invalid("items", "1 to 1000 items"));
    }
    if let Some(i) = m.items.iter().position(|i| !i.is_sendable()) {
        return Err(ApiError::invalid(
            "items",
            format!("item {i}: a command or frame MAVLink does not know"),
        ));
    }
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), m.name.trim().into());
    fields.insert(
        "kind".into(),
        serde_json::json!(m.kind.unwrap_or(MissionKind::Mission)),
    );
    fields.insert("items".into(), serde_json::json!(m.items));
    if let Some(field) = m.field {
        fields.insert("field".into(), field.into());
    }
    Ok(Json(store_record(&s, "missions", &key, fields).await?))
}

/// Where to upload a mission.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// System id or fleet name.
    vehicle: String,
}

/// Uploads a stored mission to a vehicle (needs a pilot): the mission protocol with
/// retries, then the vehicle's list read back and compared. Answers with the transfer's id at
/// once; its outcome follows as a command's (`GET /api/v1/commands/{id}`, the stream).
#[utoipa::path(post, path = "/api/v1/missions/{key}/upload", tag = "control",
    params(("key" = String, Path, min_length = 1, max_length = 200)),
    request_body = UploadRequest,
    responses((status = 202, description = "stored and started; the outcome follows",
        body = CommandRow), EditRefusals))]
pub async fn upload(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<UploadRequest>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let vehicle = super::vehicles::find(&s, &request.vehicle)
        .map_err(|_| ApiError::invalid("vehicle", format!("no vehicle {:?}", request.vehicle)))?;
    let mission = records(&s, "missions")
        .await?
        .into_iter()
        .find(|r| r.key == key)
        .ok_or_else(|| ApiError::not_found(format!("no mission {key:?}")))?;
    let items: Vec<MissionItem> = mission
        .fields
        .get("items")
        .and_then(|i| serde_json::from_value(i.clone()).ok())
        .ok_or_else(|| ApiError::conflict(format!("mission {key:?} has no valid items")))?;
    let kind = mission
        .fields
        .get("kind")
        .and_then(|k| serde_json::from_value(k.clone()).ok())
        .unwrap_or(MissionKind::Mission);
    let action = Action::Mission {
        kind,
        op: Operation::Upload(items),
        mission: Some(key),
    };
    start(&s, &caller, vehicle.sysid, action).await
}

async fn records(s: &AppState, table: &'static str) -> Result<Vec<Record>, ApiError> {
    let reader = s.reader.clone();
    Ok(tokio::task::spawn_blocking(move || reader.records(table))
        .await
        .map_err(ApiError::internal)??)
}

/// Writes `fields` into record `key` of `table` (merged and synced like any edit) and
/// answers with the record as it now is.
async fn store_record(
    s: &AppState,
    table: &'static str,
    key: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<Record, ApiError> {
    let encoded = sync_protocol::records::edit_fields(key, fields)
        .map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let (store, k) = (s.store.clone(), key.to_string());
    tokio::task::spawn_blocking(move || store.edit(table, &k, encoded))
        .await
        .map_err(ApiError::internal)??;
    records(s, table)
        .await?
        .into_iter()
        .find(|r| r.key == key)
        .ok_or_else(|| ApiError::internal("a record just written was not found again"))
}

/// A plan that cannot be made: a value out of range names its field (422); a field without
/// a shape, or one no pass fits in, is a conflict with what is stored (409).
fn plan_refusal(e: crate::planner::PlanError) -> ApiError {
    use crate::planner::PlanError;
    match e {
        PlanError::Invalid(name, why) => ApiError::invalid(name, why),
        e @ (PlanError::NoShape | PlanError::Empty) => ApiError::conflict(e.to_string()),
    }
}

/// What uploading a geofence started: the fence list, and the ceiling as a parameter.
#[derive(Debug, Serialize, ToSchema)]
pub struct FenceUpload {
    /// The upload of the polygon (inclusion) and its holes (exclusion) as the vehicle's fence.
    fence: CommandRow,
    /// Setting the vehicle's altitude limit to the geofence's ceiling (ArduPilot
    /// `FENCE_ALT_MAX`, PX4 `GF_MAX_VER_DIST`), when it has one.
    ceiling: Option<CommandRow>,
}

/// Uploads a geofence to a vehicle as its own fence (needs a pilot), so the autopilot enforces
/// it too: the polygon as inclusion vertices and each hole as exclusion vertices, read back
/// and compared, and its ceiling as the vehicle's altitude limit. Whether the vehicle acts on
/// its fence (ArduPilot `FENCE_ENABLE`, `FENCE_TYPE`; PX4 `GF_ACTION`) is its profile's.
#[utoipa::path(post, path = "/api/v1/geofences/{key}/upload", tag = "control",
    params(("key" = String, Path, min_length = 1, max_length = 200)),
    request_body = UploadRequest,
    responses((status = 202, description = "stored and started; each part's outcome follows \
        as a command's", body = FenceUpload), EditRefusals))]
pub async fn upload_geofence(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<UploadRequest>,
) -> Result<(StatusCode, Json<FenceUpload>), ApiError> {
    let vehicle = super::vehicles::find(&s, &request.vehicle)
        .map_err(|_| ApiError::invalid("vehicle", format!("no vehicle {:?}", request.vehicle)))?;
    let record = records(&s, "geofences")
        .await?
        .into_iter()
        .find(|r| r.key == key)
        .ok_or_else(|| ApiError::not_found(format!("no geofence {key:?}")))?;
    let shape = crate::planner::shape_of(&record.fields).map_err(plan_refusal)?;
    let ring = |points: &[crate::survey::LatLon], command: u16| -> Vec<MissionItem> {
        // A closed ring (GeoJSON's) repeats its first vertex; a fence lists each once.
        let points = crate::survey::clean_ring(points).unwrap_or_default();
        if points.len() < 3 {
            return Vec::new();
        }
        points
            .iter()
            .map(|p| MissionItem {
                command,
                frame: 0,
                params: [points.len() as f32, 0.0, 0.0, 0.0],
                x: (p.lat * 1e7).round() as i32,
                y: (p.lon * 1e7).round() as i32,
                z: 0.0,
                autocontinue: false,
            })
            .collect()
    };
    // MAV_CMD_NAV_FENCE_POLYGON_VERTEX_INCLUSION, _EXCLUSION.
    let mut items = ring(&shape.outer, 5001);
    for hole in &shape.holes {
        items.extend(ring(hole, 5002));
    }
    let action = Action::Mission {
        kind: MissionKind::Fence,
        op: Operation::Upload(items),
        mission: Some(key),
    };
    let (_, Json(fence)) = start(&s, &caller, vehicle.sysid, action).await?;
    let ceiling_m = record.fields.get("ceiling_m").and_then(|c| c.as_f64());
    let ceiling = match ceiling_m {
        Some(m) if m.is_finite() && m > 0.0 => {
            let name = if vehicle.autopilot == "px4" {
                "GF_MAX_VER_DIST"
            } else {
                "FENCE_ALT_MAX"
            };
            let op = crate::gcs::ParamOp::Set(vec![(name.to_string(), m)]);
            Some(
                start(&s, &caller, vehicle.sysid, Action::Params(op))
                    .await?
                    .1
                     .0,
            )
        }
        _ => None,
    };
    Ok((StatusCode::ACCEPTED, Json(FenceUpload { fence, ceiling })))
}

/// Stores `action` for `vehicle` as `caller`'s, queues it for the ingest loop, answers 202.
pub(super) async fn start(
    s: &AppState,
    caller: &auth::Caller,
    vehicle: u8,
    action: Action,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let (store, by, to_store) = (s.store.clone(), caller.0.name.clone(), action.clone());
    let row = tokio::task::spawn_blocking(move || store.command(vehicle, to_store, &by))
        .await
        .map_err(ApiError::internal)??;
    s.commands
        .send(SendCommand {
            id: row.id,
            vehicle,
            action,
        })
        .await
        .map_err(|_| ApiError::internal("the station is stopping"))?;
    Ok((StatusCode::ACCEPTED, Json(row)))
}

/// Plans a mission covering a field (needs a pilot) and stores it (`plan-<field>`, or the
/// request's `mission` key), ready to upload: passes along the vine rows (by default the
/// field's longest edge), one per row for spraying or a footprint less its overlap apart for
/// a survey, around the field's holes, with takeoff, speed and return to launch.
#[utoipa::path(post, path = "/api/v1/fields/{key}/plan", tag = "control",
    params(("key" = String, Path, min_length = 1, max_length = 200)),
    request_body = crate::planner::PlanRequest,
    responses((status = 201, description = "planned and stored", body = Record),
        EditRefusals))]
pub async fn plan(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<crate::planner::PlanRequest>,
) -> Result<(StatusCode, Json<Record>), ApiError> {
    request.check().map_err(plan_refusal)?;
    let field = records(&s, "fields")
        .await?
        .into_iter()
        .find(|f| f.key == key)
        .ok_or_else(|| ApiError::not_found(format!("no field {key:?}")))?;
    let planned = crate::planner::shape_of(&field.fields)
        .and_then(|shape| crate::planner::plan(&shape, &request))
        .map_err(plan_refusal)?;
    let mission = request
        .mission
        .clone()
        .unwrap_or_else(|| format!("plan-{key}"));
    if mission == "proposals" || mission.is_empty() || mission.len() > 200 {
        return Err(ApiError::invalid(
            "mission",
            "1 to 200 characters, not \"proposals\"",
        ));
    }
    let name = field
        .fields
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or(&key)
        .to_string();
    let mut fields = serde_json::Map::new();
    let what = match request.pattern {
        crate::planner::Pattern::Spray => "Spray",
        crate::planner::Pattern::Survey => "Survey",
    };
    fields.insert("name".into(), format!("{what} of {name}").into());
    fields.insert("kind".into(), serde_json::json!(MissionKind::Mission));
    fields.insert("items".into(), serde_json::json!(planned.items));
    fields.insert("field".into(), key.into());
    fields.insert(
        "plan".into(),
        serde_json::json!({
            "heading_deg": (planned.heading_deg * 10.0).round() / 10.0,
            "spacing_m": planned.spacing_m,
            "passes": planned.passes,
            "length_m": planned.length_m.round(),
            "alt_m": request.alt_m,
            "speed_mps": request.speed_mps,
        }),
    );
    let stored = store_record(&s, "missions", &mission, fields).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}
