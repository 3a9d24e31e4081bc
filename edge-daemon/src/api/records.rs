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
use trellis_web::page::KeyPageParams;
use trellis_web::{Json as JsonBody, Query};
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::store::Record;

/// One page of `table` in key order, and the `after` of the next page.
pub(super) async fn page(
    s: &AppState,
    table: &'static str,
    page: KeyPageParams,
) -> Result<(Vec<Record>, Option<String>), ApiError> {
    let limit = page.limit()?;
    let after: Option<String> = page.after()?;
    let reader = s.reader.clone();
    // One more than asked: whether it exists says whether a next page does.
    let mut records = tokio::task::spawn_blocking(move || {
        reader.records_page(table, after.as_deref(), limit + 1)
    })
    .await
    .map_err(ApiError::internal)??;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next = more
        .then(|| records.last().map(|r| r.key.clone()))
        .flatten();
    Ok((records, next))
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

/// The fields (vineyard blocks): each a record with a `name` and a `polygon`
/// (`[[lat, lon], …]`) or a GeoJSON `geometry`.
#[utoipa::path(get, path = "/api/v1/fields", tag = "records", params(KeyPageParams),
    responses((status = 200, description = "the fields", body = FieldList), ReadRefusals))]
pub async fn fields(
    State(s): State<AppState>,
    Query(p): Query<KeyPageParams>,
) -> Result<Json<FieldList>, ApiError> {
    let (fields, next) = page(&s, "fields", p).await?;
    Ok(Json(FieldList { fields, next }))
}

/// The geofences: each a record with a `polygon` or `geometry` and a `ceiling_m`.
#[utoipa::path(get, path = "/api/v1/geofences", tag = "records", params(KeyPageParams),
    responses((status = 200, description = "the geofences", body = GeofenceList), ReadRefusals))]
pub async fn geofences(
    State(s): State<AppState>,
    Query(p): Query<KeyPageParams>,
) -> Result<Json<GeofenceList>, ApiError> {
    let (geofences, next) = page(&s, "geofences", p).await?;
    Ok(Json(GeofenceList { geofences, next }))
}

/// Missions HQ proposed, for a pilot here to review.
#[utoipa::path(get, path = "/api/v1/missions/proposals", tag = "records",
    params(KeyPageParams),
    responses((status = 200, description = "the proposals", body = ProposalList), ReadRefusals))]
pub async fn proposals(
    State(s): State<AppState>,
    Query(p): Query<KeyPageParams>,
) -> Result<Json<ProposalList>, ApiError> {
    let (proposals, next) = page(&s, "proposals", p).await?;
    Ok(Json(ProposalList { proposals, next }))
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
