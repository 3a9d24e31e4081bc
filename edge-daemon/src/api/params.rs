//! `/api/v1/vehicles/{id}/params…` and `/api/v1/profiles`: a vehicle's parameters as last
//! reported, setting them with read-back, and the fleet's profiles (`firmware-configs/`):
//! comparing a vehicle with one and applying it.
//!
//! Reading and writing the vehicle are jobs like commands: stored with who asked, answered
//! `202` with their id, their outcome (what was read, set, refused or missing) in
//! `GET /api/v1/commands/{id}`. A comparison answers at once from the stored list, which
//! must be complete (`POST …/params/fetch` reads it).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use trellis_web::openapi::{EditRefusals, ReadRefusals};
use trellis_web::page::{by_key, KeyPageParams};
use trellis_web::{Json as JsonBody, Path, Query};
use utoipa::{IntoParams, ToSchema};

use super::{auth, control, ApiError, AppState};
use crate::gcs::{Action, ParamOp};
use crate::profile::{self, Comparison, Profile, ProfileError};
use crate::store::{CommandRow, ParamChange, ParamList};
use crate::vehicle::VehicleView;

/// A vehicle's parameters and, when it follows a profile, how it differs from it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParamsView {
    #[serde(flatten)]
    list: ParamList,
    /// The vehicle against its profile (all its parameters, not only this page's); present
    /// once a profile was applied and the list is complete.
    drift: Option<Comparison>,
    /// `after` for the next page of `params` (a parameter's name); `null` on the last.
    next: Option<String>,
}

/// A vehicle's parameters as it last reported them, by name, and its drift from its profile.
/// A page holds up to 1000 (ArduCopter has about 1300).
#[utoipa::path(get, path = "/api/v1/vehicles/{id}/params", tag = "params",
    params(("id" = String, Path, description = "system id or fleet name"), KeyPageParams),
    responses((status = 200, description = "the parameters", body = ParamsView), ReadRefusals))]
pub async fn params(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<ParamsView>, ApiError> {
    let vehicle = super::vehicles::find(&s, &id)?;
    let mut list = stored(&s, vehicle.sysid).await?;
    let drift = match (&list.profile, &list.profile_text, list.complete) {
        (Some(name), Some(text), true) => profile::parse(name, text)
            .ok()
            .map(|p| profile::compare(&p, &values(&list), version(&vehicle))),
        _ => None,
    };
    let page = KeyPageParams {
        limit: Some(page.limit.unwrap_or(trellis_web::page::KEY_PAGE_MAX)),
        ..page
    };
    let (params, next) = by_key(std::mem::take(&mut list.params), &page, |p| p.name.clone())?;
    list.params = params;
    Ok(Json(ParamsView { list, drift, next }))
}

/// Sets parameters on a vehicle (needs a pilot), in the order given, each counted only when
/// the vehicle reports holding the value; names it does not have are refused, not sent.
#[utoipa::path(put, path = "/api/v1/vehicles/{id}/params", tag = "params",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body(content = BTreeMap<String, f64>, description = "the parameters to set, by name"),
    responses((status = 202, description = "stored and started; `GET /api/v1/commands/{id}` \
        gives what was set", body = CommandRow), EditRefusals))]
pub async fn set_params(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    JsonBody(values): JsonBody<BTreeMap<String, f64>>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let vehicle = super::vehicles::find(&s, &id)?;
    if values.is_empty() {
        return Err(ApiError::invalid("body", "name at least one parameter"));
    }
    if let Some(name) = values.keys().find(|n| !is_param_name(n)) {
        return Err(ApiError::invalid(
            "body",
            format!("{name:?} is not a MAVLink parameter name (1 to 16 ASCII characters)"),
        ));
    }
    if let Some((name, _)) = values.iter().find(|(_, v)| !v.is_finite()) {
        return Err(ApiError::invalid("body", format!("{name}: not a number")));
    }
    let op = ParamOp::Set(values.into_iter().collect());
    control::start(&s, &caller, vehicle.sysid, Action::Params(op)).await
}

/// Reads the vehicle's whole parameter list (needs a pilot), asking again for each one a
/// lossy link dropped.
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/params/fetch", tag = "params",
    params(("id" = String, Path, description = "system id or fleet name")),
    responses((status = 202, description = "stored and started", body = CommandRow),
        EditRefusals))]
pub async fn fetch(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let vehicle = super::vehicles::find(&s, &id)?;
    control::start(&s, &caller, vehicle.sysid, Action::Params(ParamOp::Fetch)).await
}

/// Parameters to read from the vehicle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    names: Vec<String>,
}

/// Reads parameters from the vehicle now (needs a pilot); the values come in the outcome's
/// `detail.read`, and the stored list follows.
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/params/read", tag = "params",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body = ReadRequest,
    responses((status = 202, description = "stored and started", body = CommandRow),
        EditRefusals))]
pub async fn read(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReadRequest>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let vehicle = super::vehicles::find(&s, &id)?;
    if request.names.is_empty() || request.names.len() > 100 {
        return Err(ApiError::invalid("names", "1 to 100 parameter names"));
    }
    if let Some(name) = request.names.iter().find(|n| !is_param_name(n)) {
        return Err(ApiError::invalid(
            "names",
            format!("{name:?} is not a MAVLink parameter name (1 to 16 ASCII characters)"),
        ));
    }
    let op = ParamOp::Read(request.names);
    control::start(&s, &caller, vehicle.sysid, Action::Params(op)).await
}

fn is_param_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 16 && n.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only this parameter's changes.
    name: Option<String>,
    /// RFC 3339 or Unix milliseconds; from the first change when absent.
    #[param(schema_with = trellis_web::openapi::time_param)]
    from: Option<String>,
    /// RFC 3339 or Unix milliseconds; to the last when absent.
    #[param(schema_with = trellis_web::openapi::time_param)]
    to: Option<String>,
    /// How many, newest first (default 500).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
    /// Only changes older than this: the `next` of the page before.
    before: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParamHistory {
    vehicle: u8,
    changes: Vec<ParamChange>,
    /// `before` for the next (older) page; `null` on the last.
    next: Option<i64>,
}

/// A vehicle's parameter changes, newest first: those the station made (with its command)
/// and those made elsewhere.
#[utoipa::path(get, path = "/api/v1/vehicles/{id}/params/history", tag = "params",
    params(("id" = String, Path, description = "system id or fleet name"), HistoryParams),
    responses((status = 200, description = "the changes", body = ParamHistory), ReadRefusals))]
pub async fn history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryParams>,
) -> Result<Json<ParamHistory>, ApiError> {
    let vehicle = super::vehicles::find(&s, &id)?;
    let limit = trellis_web::page::limit(q.limit, 500, 10_000)?;
    let range = trellis_web::time::TimeRange::parse(
        q.from.as_deref(),
        q.to.as_deref(),
        i64::MAX,
        i64::MAX,
    )?;
    let query = crate::store::ParamHistoryQuery {
        vehicle: vehicle.sysid,
        name: q.name,
        from_us: range.from_us,
        to_us: range.to_us,
        before: q.before,
        limit: limit + 1,
    };
    let reader = s.reader.clone();
    let changes = tokio::task::spawn_blocking(move || reader.param_history(&query))
        .await
        .map_err(ApiError::internal)??;
    let (changes, next) = trellis_web::page::split(changes, limit, |c| c.id);
    Ok(Json(ParamHistory {
        vehicle: vehicle.sysid,
        changes,
        next,
    }))
}

/// A profile to compare with or apply: one of the station's (`GET /api/v1/profiles`) by
/// name, or a file's `text` under the file's name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// `ardupilot/copter-survey.param`; with `text`, the file's name (its ending, `.param`
    /// or `.params`, says its format).
    profile: String,
    /// The profile file's contents.
    text: Option<String>,
    /// Apply only: compare and answer, change nothing.
    #[serde(default)]
    dry_run: bool,
}

impl ProfileRequest {
    fn load(&self) -> Result<Profile, ApiError> {
        let parsed = match &self.text {
            Some(text) if text.len() > 256 * 1024 => {
                return Err(ApiError::invalid("text", "larger than 256 KiB"));
            }
            Some(text) => profile::parse(&self.profile, text),
            None => profile::built_in(&self.profile),
        };
        parsed.map_err(|e| match e {
            ProfileError::Unknown(..) => ApiError::not_found(e.to_string()),
            e => ApiError::invalid(
                if self.text.is_some() {
                    "text"
                } else {
                    "profile"
                },
                e.to_string(),
            ),
        })
    }
}

/// Compares a vehicle's parameters with a profile (needs a pilot): each one that differs,
/// that the vehicle lacks, or that a newer firmware renamed in a way that cannot be
/// converted. Renamed parameters are followed by the vehicle's firmware version.
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/params/diff", tag = "params",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body = ProfileRequest,
    responses((status = 200, description = "the comparison", body = Comparison), EditRefusals))]
pub async fn diff(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ProfileRequest>,
) -> Result<Json<Comparison>, ApiError> {
    let vehicle = super::vehicles::find(&s, &id)?;
    let profile = request.load()?;
    check_family(&profile, &vehicle)?;
    let list = stored(&s, vehicle.sysid).await?;
    if !list.complete {
        return Err(ApiError::conflict(format!(
            "the station has not read {}'s whole parameter list; POST \
             /api/v1/vehicles/{}/params/fetch first",
            vehicle.name, vehicle.sysid
        )));
    }
    Ok(Json(profile::compare(
        &profile,
        &values(&list),
        version(&vehicle),
    )))
}

/// Applies a profile to a vehicle (needs a pilot; never while it is armed): reads its list,
/// sets what differs in the profile's order with read-back, reads the list again after an
/// `*_ENABLE` change, and records that the vehicle follows the profile. The outcome lists
/// what was set, refused and missing, and what needs a reboot. `dry_run` answers the
/// comparison instead (200).
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/params/apply", tag = "params",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body = ProfileRequest,
    responses((status = 202, description = "stored and started", body = CommandRow),
        (status = 200, description = "dry run: the comparison", body = Comparison),
        EditRefusals))]
pub async fn apply(
    State(s): State<AppState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ProfileRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if request.dry_run {
        return diff(State(s), Path(id), JsonBody(request))
            .await
            .map(IntoResponse::into_response);
    }
    let vehicle = super::vehicles::find(&s, &id)?;
    let profile = request.load()?;
    check_family(&profile, &vehicle)?;
    if vehicle.armed {
        return Err(ApiError::conflict(format!(
            "{} is armed; profiles are applied on the ground",
            vehicle.name
        )));
    }
    let action = Action::Params(ParamOp::Apply(profile));
    control::start(&s, &caller, vehicle.sysid, action)
        .await
        .map(IntoResponse::into_response)
}

/// A profile the station has built in.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileInfo {
    name: String,
    family: profile::Family,
    /// The firmware versions it is written for.
    versions: Vec<String>,
    params: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    profiles: Vec<ProfileInfo>,
    /// `after` for the next page (a profile's name); `null` on the last.
    next: Option<String>,
}

/// The profiles built into the station (`firmware-configs/`), by name.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "params", params(KeyPageParams),
    responses((status = 200, description = "the profiles", body = ProfileList), ReadRefusals))]
pub async fn profiles(Query(page): Query<KeyPageParams>) -> Result<Json<ProfileList>, ApiError> {
    let profiles = profile::built_in_names()
        .into_iter()
        .filter_map(|n| profile::built_in(n).ok())
        .map(|p| ProfileInfo {
            versions: p.versions.iter().map(|(a, b)| format!("{a}.{b}")).collect(),
            params: p.entries.len(),
            family: p.family,
            name: p.name,
        })
        .collect();
    let (profiles, next) = by_key(profiles, &page, |p| p.name.clone())?;
    Ok(Json(ProfileList { profiles, next }))
}

async fn stored(s: &AppState, vehicle: u8) -> Result<ParamList, ApiError> {
    let reader = s.reader.clone();
    Ok(tokio::task::spawn_blocking(move || reader.params(vehicle))
        .await
        .map_err(ApiError::internal)??)
}

fn values(list: &ParamList) -> BTreeMap<String, f64> {
    list.params
        .iter()
        .map(|p| (p.name.clone(), p.value))
        .collect()
}

/// A vehicle's firmware (major, minor), from its AUTOPILOT_VERSION.
fn version(v: &VehicleView) -> Option<(u8, u8)> {
    let mut parts = v.firmware_version.as_deref()?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// An ArduPilot profile is never compared with or sent to PX4, nor the reverse.
fn check_family(p: &Profile, v: &VehicleView) -> Result<(), ApiError> {
    match profile::Family::of_autopilot(v.autopilot) {
        Some(f) if f == p.family => Ok(()),
        _ => Err(ApiError::invalid(
            "profile",
            format!(
                "{} is a {:?} profile; {} runs {}",
                p.name, p.family, v.name, v.autopilot
            ),
        )),
    }
}
