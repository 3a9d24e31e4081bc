//! Commands to vehicles, as stored: who sent what to which vehicle, and where it stands.
//!
//! A command's row is written, with a `COMMAND` event for sync and stream clients, in one
//! transaction committed before the command goes to the vehicle; each outcome after updates
//! the row and adds another event, committed at once. Commands are never deleted by the quota.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::gcs::{Action, Outcome};

/// A command and where it stands, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CommandRow {
    pub id: i64,
    /// The vehicle's system id.
    pub vehicle: u8,
    /// `arm`, `disarm`, `takeoff`, `land`, `rtl`, `mode`, `goto`, `speed`, `start_mission`,
    /// `pause`, `continue`, `reboot`; transfers: `upload_mission`, `download_mission`,
    /// `clear_mission`, `set_current`.
    pub command: String,
    /// The command with its arguments, as sent.
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// For people: "mode LOITER".
    pub description: String,
    /// The token that sent it.
    pub by: String,
    pub outcome: Outcome,
    /// The MAV_RESULT of the answer that gave the outcome (0 accepted, 1 temporarily
    /// rejected, 2 denied, 3 unsupported, 4 failed, 5 in progress, 6 cancelled).
    pub result: Option<u8>,
    /// Percent done, from an in-progress answer that gives one.
    pub progress: Option<u8>,
    /// How many times it went out (retries carry MAVLink's confirmation counter).
    pub sends: u8,
    /// What a transfer brought back (`{"items": […]}`) or why it failed (`{"error": …}`).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    pub created_us: i64,
    pub updated_us: i64,
}

const COLUMNS: &str = "id, vehicle, command, args, by, outcome, result, progress, sends, \
    created_us, updated_us, description, detail";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommandRow> {
    let args: String = r.get(3)?;
    let args: serde_json::Value = serde_json::from_str(&args).unwrap_or_default();
    let outcome: String = r.get(5)?;
    let detail: Option<String> = r.get(12)?;
    Ok(CommandRow {
        id: r.get(0)?,
        vehicle: r.get(1)?,
        command: r.get(2)?,
        description: r.get(11)?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        args,
        by: r.get(4)?,
        // Written only from `Outcome::as_str`; an unknown one is a newer version's.
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Failed),
        result: r.get(6)?,
        progress: r.get(7)?,
        sends: r.get(8)?,
        created_us: r.get(9)?,
        updated_us: r.get(10)?,
    })
}

/// Stores a new command as pending; its id.
pub(super) fn insert(
    conn: &Connection,
    vehicle: u8,
    action: &Action,
    by: &str,
    t_us: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO commands (vehicle, command, args, description, by, outcome, sends,
            created_us, updated_us)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
    )?
    .execute(params![
        vehicle,
        action.name(),
        action.args().to_string(),
        action.describe(),
        by,
        t_us
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Records an outcome; the row as it now is, or `None` for an unknown id.
pub(super) fn update(
    conn: &Connection,
    u: &crate::gcs::CommandUpdate,
    t_us: i64,
) -> rusqlite::Result<Option<CommandRow>> {
    conn.prepare_cached(
        "UPDATE commands SET outcome = ?2, result = ?3, progress = ?4,
            sends = max(sends, ?5), updated_us = ?6, detail = coalesce(?7, detail)
         WHERE id = ?1",
    )?
    .execute(params![
        u.id,
        u.outcome.as_str(),
        u.result,
        u.progress,
        u.sends,
        t_us,
        u.detail.as_ref().map(|d| d.to_string())
    ])?;
    get(conn, u.id)
}

pub(super) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<CommandRow>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM commands WHERE id = ?1"))?
        .query_row([id], row)
        .optional()
}
