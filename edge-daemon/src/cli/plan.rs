//! `plan FIELD`: plan a mission over a field through a running daemon, and optionally upload
//! it to a vehicle.
//!
//! Exit codes: 0 planned (and uploaded, with `--upload`), 1 the upload did not succeed, 3 the
//! daemon could not be reached, 4 a pilot's token is needed, 5 the request was wrong (no such
//! field, a value out of range).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::client::ClientArgs;

const EXIT_INVALID: u8 = 5;
/// Longer than a 200-item upload with its read-back takes over a lossy radio.
const WAIT: Duration = Duration::from_secs(300);

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The field's key (`GET /api/v1/fields`).
    field: String,
    /// Metres above home.
    #[arg(long)]
    alt_m: f64,
    #[arg(long)]
    speed_mps: f64,
    /// `spray`: one pass per vine row; `survey`: passes a camera footprint less its overlap
    /// apart, each covering its swath.
    #[arg(long, value_parser = ["spray", "survey"], default_value = "spray")]
    pattern: String,
    /// The vine row pitch, metres.
    #[arg(long)]
    row_spacing_m: Option<f64>,
    /// Survey: the camera's footprint across the track, metres.
    #[arg(long)]
    footprint_m: Option<f64>,
    /// Survey: the share of the footprint adjacent passes overlap (0 to 0.9).
    #[arg(long)]
    side_overlap: Option<f64>,
    /// Direction of the passes, degrees from north; default the field's longest edge.
    #[arg(long)]
    heading_deg: Option<f64>,
    /// How far past the block's edge the vehicle may turn, metres.
    #[arg(long)]
    turn_outside_m: Option<f64>,
    /// The key to store the mission under; default `plan-<field>`.
    #[arg(long)]
    mission: Option<String>,
    /// Upload the planned mission to this vehicle and wait until it is read back.
    #[arg(long)]
    upload: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn run(a: PlanArgs) -> anyhow::Result<ExitCode> {
    let mut body = json!({ "alt_m": a.alt_m, "speed_mps": a.speed_mps, "pattern": a.pattern });
    for (key, value) in [
        ("row_spacing_m", a.row_spacing_m),
        ("footprint_m", a.footprint_m),
        ("side_overlap", a.side_overlap),
        ("heading_deg", a.heading_deg),
        ("turn_outside_m", a.turn_outside_m),
    ] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    if let Some(m) = &a.mission {
        body["mission"] = json!(m);
    }
    let path = format!("/api/v1/fields/{}/plan", a.field);
    let planned = match super::client::post(&a.client, &path, &body) {
        Ok(v) => v,
        Err(refusal) => return Ok(refusal.exit_code(EXIT_INVALID)),
    };
    let key = planned["key"].as_str().unwrap_or_default().to_string();
    let plan = &planned["fields"]["plan"];
    let items = planned["fields"]["items"].as_array().map_or(0, Vec::len);
    if !a.client.json {
        println!(
            "planned {key}: {} passes {} m apart at {}°, {} m of passes, {items} items",
            plan["passes"], plan["spacing_m"], plan["heading_deg"], plan["length_m"]
        );
    }
    let Some(vehicle) = a.upload else {
        if a.client.json {
            println!("{planned}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let path = format!("/api/v1/missions/{key}/upload");
    let job = match super::client::post(&a.client, &path, &json!({ "vehicle": vehicle })) {
        Ok(v) => v,
        Err(refusal) => return Ok(refusal.exit_code(EXIT_INVALID)),
    };
    let id = job["id"].as_i64().unwrap_or(0);
    let job = match super::client::wait_for_command(&a.client, job, WAIT) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let outcome = job["outcome"].as_str().unwrap_or("?");
    if a.client.json {
        println!("{}", json!({ "mission": planned, "upload": job }));
    } else {
        let why = job["detail"]["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        println!(
            "upload to {vehicle} (command {id}): {}{why}",
            outcome.replace('_', " ")
        );
    }
    Ok(if outcome == "accepted" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
