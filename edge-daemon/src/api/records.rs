//! Editable records at the station: fields, geofences, vehicle names, mission proposals.
//! Edits made here are stamped with the station's HLC, committed before the answer, and
//! synced to the relay; edits made at HQ arrive by downsync. Conflicting offline edits merge
//! per field, the later write winning (see `sync_protocol::records`).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sync_protocol::records::edit_fields;
use trellis_web::openapi::{EditRefusals, ReadRefusals, RecordFields};
use trellis_web::Json as JsonBody;
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::store::Record;

async fn list(s: &AppState, table: &'static str) -> Result<Vec<Record>, ApiError> {
    let reader = s.reader.clone();
    Ok(tokio::task::spawn_blocking(move || reader.records(table))
        .await
        .map_err(ApiError::internal)??)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldList {
    fields: Vec<Record>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GeofenceList {
    geofences: Vec<Record>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalList {
    proposals: Vec<Record>,
}

/// The fields (vineyard blocks): each a record with a `name` and a `polygon`
/// (`[[lat, lon], …]`) or a GeoJSON `geometry`.
#[utoipa::path(get, path = "/api/v1/fields", tag = "records",
    responses((status = 200, description = "the fields", body = FieldList), ReadRefusals))]
pub async fn fields(State(s): State<AppState>) -> Result<Json<FieldList>, ApiError> {
    Ok(Json(FieldList {
        fields: list(&s, "fields").await?,
    }))
}

/// The geofences: each a record with a `polygon` or `geometry` and a `ceiling_m`.
#[utoipa::path(get, path = "/api/v1/geofences", tag = "records",
    responses((status = 200, description = "the geofences", body = GeofenceList), ReadRefusals))]
pub async fn geofences(State(s): State<AppState>) -> Result<Json<GeofenceList>, ApiError> {
    Ok(Json(GeofenceList {
        geofences: list(&s, "geofences").await?,
    }))
}

/// Missions HQ proposed, for a pilot here to review.
#[utoipa::path(get, path = "/api/v1/missions/proposals", tag = "records",
    responses((status = 200, description = "the proposals", body = ProposalList), ReadRefusals))]
pub async fn proposals(State(s): State<AppState>) -> Result<Json<ProposalList>, ApiError> {
    Ok(Json(ProposalList {
        proposals: list(&s, "proposals").await?,
    }))
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

/// The answer to an edit of a record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Edited {
    key: String,
    /// Fields whose value changed (a field set to what it was does not count).
    fields_changed: usize,
}

/// Sets the given fields of a field record and leaves its others alone.
#[utoipa::path(put, path = "/api/v1/fields/{key}", tag = "records",
    params(("key" = String, Path, min_length = 1, max_length = 200)), request_body = RecordFields,
    responses((status = 200, description = "saved", body = Edited), EditRefusals))]
pub async fn put_field(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(fields): JsonBody<Map<String, Value>>,
) -> Result<Json<Edited>, ApiError> {
    let fields_changed = edit(&s, "fields", &key, fields).await?;
    Ok(Json(Edited {
        key,
        fields_changed,
    }))
}

/// Sets the given fields of a geofence and leaves its others alone.
#[utoipa::path(put, path = "/api/v1/geofences/{key}", tag = "records",
    params(("key" = String, Path, min_length = 1, max_length = 200)), request_body = RecordFields,
    responses((status = 200, description = "saved", body = Edited), EditRefusals))]
pub async fn put_geofence(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(fields): JsonBody<Map<String, Value>>,
) -> Result<Json<Edited>, ApiError> {
    let fields_changed = edit(&s, "geofences", &key, fields).await?;
    Ok(Json(Edited {
        key,
        fields_changed,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// 1 to 64 characters.
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Renamed {
    sysid: u8,
    uid: String,
    renamed: bool,
}

/// Renames a vehicle in the fleet registry, here and, once synced, at HQ and every station
/// of the org (the registry knows it by autopilot uid).
#[utoipa::path(patch, path = "/api/v1/vehicles/{id}", tag = "vehicles",
    params(("id" = String, Path, description = "system id or fleet name")),
    request_body = Rename,
    responses((status = 200, description = "renamed", body = Renamed), EditRefusals))]
pub async fn rename(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Rename>,
) -> Result<Json<Renamed>, ApiError> {
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
    Ok(Json(Renamed {
        sysid: v.sysid,
        uid,
        renamed: true,
    }))
}
