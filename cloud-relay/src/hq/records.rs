//! Editable records at HQ: fields, geofences, the fleet registry (vehicle names) and mission
//! proposals. An edit here is stamped with the relay's HLC, stored under the merge rule,
//! and sent to every edge of the org (at once to connected ones, on reconnect to the rest),
//! where edits made offline merge with it field by field.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sync_protocol::records::{edit_fields, FieldChange};
use trellis_web::openapi::{EditRefusals, ReadRefusals, RecordFields};
use trellis_web::page::{by_key, KeyPageParams};
use trellis_web::{Json as JsonBody, Path, Query};
use utoipa::ToSchema;

use super::{ApiError, Caller, HqState, Org};
use crate::live::Update;
use crate::store::hq::Role;
use crate::store::Record;

/// Stamps `fields` of `table/key` with the relay's clock and applies them.
async fn edit(
    s: &HqState,
    org: &str,
    table: &'static str,
    key: &str,
    fields: Map<String, Value>,
) -> Result<usize, ApiError> {
    let fields = edit_fields(key, fields).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let mut changes = Vec::with_capacity(fields.len());
    for (field, value) in fields {
        let hlc = s
            .hlc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .now(crate::now_us().max(0) as u64)
            .map_err(ApiError::internal)?;
        changes.push(FieldChange {
            table: table.into(),
            key: key.into(),
            field,
            value,
            hlc,
        });
    }
    let (store, o) = (s.sync.clone(), org.to_string());
    let won = tokio::task::spawn_blocking(move || store.apply_changes(&o, &changes))
        .await
        .map_err(ApiError::internal)??;
    s.live.notify(Update::Records {
        org: org.to_string(),
    });
    Ok(won)
}

/// One page of the org's `table` in key order, and the `after` of the next page.
async fn list(
    s: &HqState,
    org: String,
    table: &'static str,
    page: KeyPageParams,
) -> Result<(Vec<Record>, Option<String>), ApiError> {
    page.limit()?;
    let store = s.sync.clone();
    let records = tokio::task::spawn_blocking(move || store.records(&org, table))
        .await
        .map_err(ApiError::internal)??;
    by_key(records, &page, |r| r.key.clone())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldList {
    fields: Vec<Record>,
    /// `after` for the next page; `null` on the last.
    next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GeofenceList {
    geofences: Vec<Record>,
    /// `after` for the next page; `null` on the last.
    next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalList {
    proposals: Vec<Record>,
    /// `after` for the next page; `null` on the last.
    next: Option<String>,
}

/// The org's fields (vineyard blocks), as every station of the org has them.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/fields", tag = "records",
    params(Org, KeyPageParams),
    responses((status = 200, description = "the fields", body = FieldList), ReadRefusals))]
pub async fn fields(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<FieldList>, ApiError> {
    let org = caller.org(&org)?;
    let (fields, next) = list(&s, org, "fields", page).await?;
    Ok(Json(FieldList { fields, next }))
}

/// The org's geofences.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/geofences", tag = "records",
    params(Org, KeyPageParams),
    responses((status = 200, description = "the geofences", body = GeofenceList), ReadRefusals))]
pub async fn geofences(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<GeofenceList>, ApiError> {
    let org = caller.org(&org)?;
    let (geofences, next) = list(&s, org, "geofences", page).await?;
    Ok(Json(GeofenceList { geofences, next }))
}

/// The answer to an edit of a record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Edited {
    key: String,
    /// Fields whose value changed.
    fields_changed: usize,
}

/// The role is checked before the body: a viewer hears "not allowed", whatever it sent.
async fn put(
    s: &HqState,
    caller: &Caller,
    org: &str,
    table: &'static str,
    key: String,
    body: Result<JsonBody<Map<String, Value>>, ApiError>,
) -> Result<Json<Edited>, ApiError> {
    let org = caller.org(org)?;
    caller.require(Role::Operator)?;
    let JsonBody(fields) = body?;
    let fields_changed = edit(s, &org, table, &key, fields).await?;
    Ok(Json(Edited {
        key,
        fields_changed,
    }))
}

/// Sets the given fields of a field record, leaves the others as they are; it reaches every
/// station of the org.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/fields/{key}", tag = "records",
    params(Org, ("key" = String, Path, min_length = 1, max_length = 200)),
    request_body = RecordFields,
    responses((status = 200, description = "saved", body = Edited), EditRefusals))]
pub async fn put_field(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, key)): Path<(String, String)>,
    body: Result<JsonBody<Map<String, Value>>, ApiError>,
) -> Result<Json<Edited>, ApiError> {
    put(&s, &caller, &org, "fields", key, body).await
}

/// Sets the given fields of a geofence, leaves the others as they are.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/geofences/{key}", tag = "records",
    params(Org, ("key" = String, Path, min_length = 1, max_length = 200)),
    request_body = RecordFields,
    responses((status = 200, description = "saved", body = Edited), EditRefusals))]
pub async fn put_geofence(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, key)): Path<(String, String)>,
    body: Result<JsonBody<Map<String, Value>>, ApiError>,
) -> Result<Json<Edited>, ApiError> {
    put(&s, &caller, &org, "geofences", key, body).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Renamed {
    id: i64,
    uid: String,
    renamed: bool,
}

/// Renames a vehicle in the fleet registry. The registry key is the autopilot uid, so the
/// name follows the vehicle to any station.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/vehicles/{id}", tag = "fleet",
    params(Org, ("id" = i64, Path, description = "the fleet id")),
    request_body = Rename,
    responses((status = 200, description = "renamed", body = Renamed), EditRefusals))]
pub async fn rename(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    body: Result<JsonBody<Rename>, ApiError>,
) -> Result<Json<Renamed>, ApiError> {
    let org = caller.org(&org)?;
    caller.require(Role::Operator)?;
    let JsonBody(body) = body?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::invalid("name", "a name is 1 to 64 characters"));
    }
    let v = super::fleet::find(&s, &org, &id).await?;
    let Some(uid) = v.uid else {
        return Err(ApiError::conflict(
            "this vehicle has not reported an autopilot uid yet; rename it at its ground station",
        ));
    };
    let fields = Map::from_iter([("name".to_string(), Value::String(name))]);
    edit(&s, &org, "vehicles", &format!("uid:{uid}"), fields).await?;
    Ok(Json(Renamed {
        id: v.id,
        uid,
        renamed: true,
    }))
}

/// Missions proposed to the org's stations, where a pilot on site approves or declines.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/missions/proposals", tag = "records",
    params(Org, KeyPageParams),
    responses((status = 200, description = "the proposals", body = ProposalList), ReadRefusals))]
pub async fn proposals(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<ProposalList>, ApiError> {
    let org = caller.org(&org)?;
    let (proposals, next) = list(&s, org, "proposals", page).await?;
    Ok(Json(ProposalList { proposals, next }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    title: String,
    /// The fleet id of the vehicle it is meant for, if one.
    vehicle_id: Option<i64>,
    /// The mission, as a JSON object.
    #[schema(value_type = Object)]
    mission: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Proposed {
    id: String,
    /// `proposed`.
    status: &'static str,
}

/// Proposes a mission; it reaches the stations, where a pilot on site must approve it.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/missions/proposals", tag = "records",
    params(Org), request_body = ProposalBody,
    responses((status = 201, description = "proposed", body = Proposed), EditRefusals))]
pub async fn propose(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    body: Result<JsonBody<ProposalBody>, ApiError>,
) -> Result<(axum::http::StatusCode, Json<Proposed>), ApiError> {
    let org = caller.org(&org)?;
    caller.require(Role::Operator)?;
    let JsonBody(body) = body?;
    if body.title.trim().is_empty() || body.title.len() > 200 {
        return Err(ApiError::invalid("title", "1 to 200 characters"));
    }
    if !body.mission.is_object() {
        return Err(ApiError::invalid("mission", "must be a JSON object"));
    }
    let mut fields = Map::new();
    if let Some(id) = body.vehicle_id {
        let v = super::fleet::find(&s, &org, &id.to_string()).await?;
        fields.insert("vehicle".into(), json!({ "name": v.name, "uid": v.uid }));
    }
    let mut id = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| ApiError::internal("no randomness"))?;
    let key = format!(
        "p-{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    fields.insert("title".into(), Value::String(body.title));
    fields.insert("mission".into(), body.mission);
    fields.insert("status".into(), Value::String("proposed".into()));
    fields.insert("proposed_by".into(), Value::String(caller.0.name.clone()));
    fields.insert("proposed_us".into(), json!(crate::now_us()));
    edit(&s, &org, "proposals", &key, fields).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(Proposed {
            id: key,
            status: "proposed",
        }),
    ))
}
