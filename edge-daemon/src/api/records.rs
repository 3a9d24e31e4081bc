//! Editable records at the station: fields, geofences, vehicle names, mission proposals.
//! Edits made here are stamped with the station's HLC, committed before the answer, and
//! synced to the relay; edits made at HQ arrive by downsync. Conflicting offline edits merge
//! per field, the later write winning (see `sync_protocol::records`).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sync_protocol::records::edit_fields;
use trellis_web::Json as JsonBody;

use super::{ApiError, AppState};

fn table(name: &str) -> Result<&'static str, ApiError> {
    match name {
        "fields" => Ok("fields"),
        "geofences" => Ok("geofences"),
        _ => Err(ApiError::not_found("no such path")),
    }
}

async fn list(s: &AppState, table: &'static str) -> Result<Json<Value>, ApiError> {
    let reader = s.reader.clone();
    let records = tokio::task::spawn_blocking(move || reader.records(table))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ table: records })))
}

/// `GET /api/v1/fields` and `/api/v1/geofences`.
pub async fn get_table(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list(&s, table(&name)?).await
}

/// `GET /api/v1/missions/proposals`: missions HQ proposed, for a pilot here to review.
pub async fn proposals(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    list(&s, "proposals").await
}

async fn edit(
    s: &AppState,
    table: &'static str,
    key: &str,
    fields: Map<String, Value>,
) -> Result<usize, ApiError> {
    let encoded = edit_fields(key, fields).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let (store, key) = (s.store.clone(), key.to_string());
    Ok(
        tokio::task::spawn_blocking(move || store.edit(table, &key, encoded))
            .await
            .map_err(ApiError::internal)??,
    )
}

/// `PUT /api/v1/fields/{key}` and `/api/v1/geofences/{key}`: sets the given fields of the
/// record and leaves its others alone.
pub async fn put_record(
    State(s): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    JsonBody(fields): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let table = table(&name)?;
    let changed = edit(&s, table, &key, fields).await?;
    Ok(Json(json!({ "key": key, "fields_changed": changed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    name: String,
}

/// `PATCH /api/v1/vehicles/{id}`: renames a vehicle in the fleet registry, here and, once
/// synced, at HQ and every station of the org (the registry knows it by autopilot uid).
pub async fn rename(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Rename>,
) -> Result<Json<Value>, ApiError> {
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::invalid("name", "a name is 1 to 64 characters"));
    }
    let v = super::vehicles::find(&s, &id)?;
    let Some(uid) = v.uid.clone() else {
        return Err(ApiError::conflict(
            "this vehicle has not reported an autopilot uid (AUTOPILOT_VERSION) yet",
        ));
    };
    let fields = Map::from_iter([("name".to_string(), Value::String(name))]);
    edit(&s, "vehicles", &format!("uid:{uid}"), fields).await?;
    Ok(Json(
        json!({ "sysid": v.sysid, "uid": uid, "renamed": true }),
    ))
}
