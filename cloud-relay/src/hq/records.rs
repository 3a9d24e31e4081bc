//! Editable records at HQ: fields, geofences, the fleet registry (vehicle names) and mission
//! proposals. An edit here is stamped with the relay's HLC, stored under the merge rule,
//! and sent to every edge of the org (at once to connected ones, on reconnect to the rest),
//! where edits made offline merge with it field by field.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sync_protocol::records::{edit_fields, FieldChange};

use super::{ApiError, Caller, HqState};
use crate::live::Update;
use crate::store::hq::Role;

/// Stamps `fields` of `table/key` with the relay's clock and applies them.
async fn edit(
    s: &HqState,
    org: &str,
    table: &'static str,
    key: &str,
    fields: Map<String, Value>,
) -> Result<usize, ApiError> {
    let fields = edit_fields(key, fields).map_err(|e| ApiError::bad_request(e.to_string()))?;
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

async fn list(s: &HqState, org: String, table: &'static str) -> Result<Json<Value>, ApiError> {
    let store = s.sync.clone();
    let records = tokio::task::spawn_blocking(move || store.records(&org, table))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ table: records })))
}

fn table(name: &str) -> Result<&'static str, ApiError> {
    match name {
        "fields" => Ok("fields"),
        "geofences" => Ok("geofences"),
        _ => Err(ApiError::not_found("no such path")),
    }
}

/// `GET /api/v1/orgs/{org}/fields` (and `/geofences`).
pub async fn get_table(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    list(&s, org, table(&name)?).await
}

/// `PUT /api/v1/orgs/{org}/fields/{key}` (and `/geofences/{key}`): sets the given fields,
/// leaves the others as they are.
pub async fn put_record(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, name, key)): Path<(String, String, String)>,
    body: Result<Json<Map<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    let table = table(&name)?;
    caller.require(Role::Operator)?;
    let Json(fields) = body?;
    let won = edit(&s, &org, table, &key, fields).await?;
    Ok(Json(json!({ "key": key, "fields_changed": won })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    name: String,
}

/// `PATCH /api/v1/orgs/{org}/vehicles/{id}`: renames a vehicle in the fleet registry. The
/// registry key is the autopilot uid, so the name follows the vehicle to any edge.
pub async fn rename(
    State(s): State<HqState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    body: Result<Json<Rename>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    caller.require(Role::Operator)?;
    let Json(body) = body?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_request("a name is 1 to 64 characters"));
    }
    let v = super::fleet::find(&s, &org, &id).await?;
    let Some(uid) = v.uid else {
        return Err(ApiError::bad_request(
            "this vehicle has not reported an autopilot uid yet; rename it at its ground station",
        ));
    };
    let fields = Map::from_iter([("name".to_string(), Value::String(name))]);
    edit(&s, &org, "vehicles", &format!("uid:{uid}"), fields).await?;
    Ok(Json(json!({ "id": v.id, "uid": uid, "renamed": true })))
}

pub async fn proposals(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = caller.org(&org)?;
    list(&s, org, "proposals").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    title: String,
    vehicle_id: Option<i64>,
    mission: Value,
}

/// A mission HQ proposes; it reaches the edges, where a pilot on site must approve it.
pub async fn propose(
    State(s): State<HqState>,
    caller: Caller,
    Path(org): Path<String>,
    body: Result<Json<ProposalBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let org = caller.org(&org)?;
    caller.require(Role::Operator)?;
    let Json(body) = body?;
    if body.title.trim().is_empty() || body.title.len() > 200 {
        return Err(ApiError::bad_request("title must be 1 to 200 characters"));
    }
    if !body.mission.is_object() {
        return Err(ApiError::bad_request("mission must be a JSON object"));
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
        Json(json!({ "id": key, "status": "proposed" })),
    ))
}
