//! Vehicles' parameters, as stored: the last value each vehicle reported for each name, every
//! change with its time (and the station's command, when it made it), and the profile each
//! vehicle follows.
//!
//! Values come from every PARAM_VALUE the vehicle sends, so a change made from
//! QGroundControl through the router, or on the vehicle, is recorded too. A complete read of
//! the list replaces the set of names: one the vehicle no longer has is dropped.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::gcs::ParamUpdate;
use crate::profile;

/// One parameter as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ParamRow {
    pub name: String,
    /// The value, printed as the vehicle's 32-bit float would be (`21.6`).
    pub value: f64,
    /// `int8` … `int32`, `uint8` … `uint32`, `real32`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its index in the vehicle's list.
    pub index: Option<u16>,
    /// When it last changed, or was first reported.
    pub updated_us: i64,
}

/// A vehicle's parameters.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ParamList {
    pub vehicle: u8,
    /// How many parameters the vehicle says it has.
    pub count: Option<u16>,
    /// Whether every one of them has been read since the list was last asked for.
    pub complete: bool,
    /// When the whole list was last read.
    pub listed_us: Option<i64>,
    /// The profile applied to it last, which drift is measured against.
    pub profile: Option<String>,
    #[serde(skip)]
    pub profile_text: Option<String>,
    pub params: Vec<ParamRow>,
}

/// Which of a vehicle's parameter changes to read: newest first, ids below `before`.
#[derive(Debug, Clone)]
pub struct ParamHistoryQuery {
    pub vehicle: u8,
    /// Only this parameter's.
    pub name: Option<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub before: Option<i64>,
    pub limit: u32,
}

/// One change of a parameter.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ParamChange {
    pub id: i64,
    pub name: String,
    pub previous: f64,
    pub value: f64,
    /// The station's command that made it; none for a change made elsewhere (a ground
    /// station through the router, the vehicle itself).
    pub command: Option<i64>,
    pub t_us: i64,
}

/// MAV_PARAM_TYPE by name.
fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "uint8",
        2 => "int8",
        3 => "uint16",
        4 => "int16",
        5 => "uint32",
        6 => "int32",
        7 => "uint64",
        8 => "int64",
        10 => "real64",
        _ => "real32",
    }
}

/// A stored value as people read it: a float parameter without its binary noise.
fn shown(value: f64, kind: u8) -> f64 {
    if kind == 9 {
        profile::round_to_f32(value)
    } else {
        value
    }
}

pub(super) fn apply(conn: &Connection, update: &ParamUpdate, t_us: i64) -> rusqlite::Result<()> {
    match update {
        ParamUpdate::Value {
            vehicle,
            name,
            value,
            command,
        } => {
            let before: Option<f64> = conn
                .prepare_cached("SELECT value FROM params WHERE vehicle = ?1 AND name = ?2")?
                .query_row(params![vehicle, name], |r| r.get(0))
                .optional()?;
            let changed = before.is_none_or(|b| !profile::same_value(b, value.value));
            if let (Some(previous), true) = (before, changed) {
                conn.prepare_cached(
                    "INSERT INTO param_history (vehicle, name, previous, value, command, t_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    vehicle,
                    name,
                    previous,
                    value.value,
                    command,
                    t_us
                ])?;
            }
            conn.prepare_cached(
                "INSERT INTO params (vehicle, name, value, type, idx, updated_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (vehicle, name) DO UPDATE SET
                    value = excluded.value, type = excluded.type,
                    idx = coalesce(excluded.idx, idx),
                    updated_us = CASE WHEN ?7 THEN excluded.updated_us ELSE updated_us END",
            )?
            .execute(params![
                vehicle,
                name,
                value.value,
                value.kind,
                value.index,
                t_us,
                changed
            ])?;
        }
        ParamUpdate::Count { vehicle, count } => {
            conn.prepare_cached(
                "INSERT INTO param_lists (vehicle, count) VALUES (?1, ?2)
                 ON CONFLICT (vehicle) DO UPDATE SET count = excluded.count",
            )?
            .execute(params![vehicle, count])?;
        }
        ParamUpdate::Listed { vehicle, names } => {
            let stored: Vec<String> = conn
                .prepare_cached("SELECT name FROM params WHERE vehicle = ?1")?
                .query_map([vehicle], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut delete =
                conn.prepare_cached("DELETE FROM params WHERE vehicle = ?1 AND name = ?2")?;
            for gone in stored.iter().filter(|n| names.binary_search(n).is_err()) {
                delete.execute(params![vehicle, gone])?;
            }
            conn.prepare_cached(
                "INSERT INTO param_lists (vehicle, count, listed_us) VALUES (?1, ?2, ?3)
                 ON CONFLICT (vehicle) DO UPDATE SET
                    count = excluded.count, listed_us = excluded.listed_us",
            )?
            .execute(params![vehicle, names.len(), t_us])?;
        }
        ParamUpdate::Follows {
            vehicle,
            profile,
            text,
        } => {
            conn.prepare_cached(
                "INSERT INTO param_lists (vehicle, profile, profile_text, profile_us)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (vehicle) DO UPDATE SET profile = excluded.profile,
                    profile_text = excluded.profile_text, profile_us = excluded.profile_us",
            )?
            .execute(params![vehicle, profile, text, t_us])?;
        }
    }
    Ok(())
}

pub(super) fn list(conn: &Connection, vehicle: u8) -> rusqlite::Result<ParamList> {
    type Head = (Option<u16>, Option<i64>, Option<String>, Option<String>);
    let (count, listed_us, profile, profile_text): Head = conn
        .query_row(
            "SELECT count, listed_us, profile, profile_text FROM param_lists WHERE vehicle = ?1",
            [vehicle],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
        .unwrap_or_default();
    let params: Vec<ParamRow> = conn
        .prepare_cached(
            "SELECT name, value, type, idx, updated_us FROM params WHERE vehicle = ?1
             ORDER BY name",
        )?
        .query_map([vehicle], |r| {
            let kind: u8 = r.get(2)?;
            Ok(ParamRow {
                name: r.get(0)?,
                value: shown(r.get(1)?, kind),
                kind: kind_name(kind),
                index: r.get(3)?,
                updated_us: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let complete = listed_us.is_some() && count.is_some_and(|c| usize::from(c) <= params.len());
    Ok(ParamList {
        vehicle,
        count,
        complete,
        listed_us,
        profile,
        profile_text,
        params,
    })
}

pub(super) fn history(
    conn: &Connection,
    q: &ParamHistoryQuery,
) -> rusqlite::Result<Vec<ParamChange>> {
    conn.prepare_cached(
        "SELECT id, name, previous, value, command, t_us FROM param_history
         WHERE vehicle = ?1 AND (?2 IS NULL OR name = ?2) AND id < ?3
           AND t_us >= ?4 AND t_us < ?5
         ORDER BY id DESC LIMIT ?6",
    )?
    .query_map(
        params![
            q.vehicle,
            q.name,
            q.before.unwrap_or(i64::MAX),
            q.from_us,
            q.to_us,
            q.limit
        ],
        |r| {
            Ok(ParamChange {
                id: r.get(0)?,
                name: r.get(1)?,
                previous: profile::tidy(r.get(2)?),
                value: profile::tidy(r.get(3)?),
                command: r.get(4)?,
                t_us: r.get(5)?,
            })
        },
    )?
    .collect()
}
