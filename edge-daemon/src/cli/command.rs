//! `command VEHICLE ACTION`: send a command through a running daemon and wait for the
//! vehicle's answer.
//!
//! Exit codes: 0 accepted, 1 any other outcome (denied, failed, unsupported, timed out),
//! 3 the daemon could not be reached, 4 refused (a pilot's token is needed), 5 the request
//! was wrong (no such vehicle or mode).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::client::ClientArgs;

/// Exit code for a request the daemon found wrong (422, 404).
const EXIT_INVALID: u8 = 5;
/// Longer than a command may take: 4 sends 1.5 s apart, or 30 s once in progress.
const WAIT: Duration = Duration::from_secs(40);

#[derive(clap::Args)]
pub struct CommandArgs {
    /// The vehicle: its system id or fleet name (V-03).
    vehicle: String,
    #[command(subcommand)]
    action: Action,
    /// Print the command's id and return without waiting for the answer.
    #[arg(long, global = true)]
    no_wait: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    Arm,
    Disarm,
    /// Climb to ALT_M metres above home.
    Takeoff {
        alt_m: f64,
    },
    Land,
    /// Return to launch.
    Rtl,
    /// Change flight mode: LOITER, AUTO, GUIDED… (PX4: Hold, Mission, Return…).
    Mode {
        name: String,
    },
    /// Fly to a point, ALT_M metres above home.
    Goto {
        #[arg(allow_negative_numbers = true)]
        lat: f64,
        #[arg(allow_negative_numbers = true)]
        lon: f64,
        alt_m: f64,
    },
    /// Change ground speed.
    Speed {
        speed_mps: f64,
    },
    StartMission,
    Pause,
    Continue,
    Reboot,
}

impl Action {
    fn body(&self) -> Value {
        match self {
            Action::Arm => json!({ "command": "arm" }),
            Action::Disarm => json!({ "command": "disarm" }),
            Action::Takeoff { alt_m } => json!({ "command": "takeoff", "alt_m": alt_m }),
            Action::Land => json!({ "command": "land" }),
            Action::Rtl => json!({ "command": "rtl" }),
            Action::Mode { name } => json!({ "command": "mode", "mode": name }),
            Action::Goto { lat, lon, alt_m } => {
                json!({ "command": "goto", "lat": lat, "lon": lon, "alt_m": alt_m })
            }
            Action::Speed { speed_mps } => json!({ "command": "speed", "speed_mps": speed_mps }),
            Action::StartMission => json!({ "command": "start_mission" }),
            Action::Pause => json!({ "command": "pause" }),
            Action::Continue => json!({ "command": "continue" }),
            Action::Reboot => json!({ "command": "reboot" }),
        }
    }
}

pub fn run(args: CommandArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/vehicles/{}/commands", args.vehicle);
    let mut command = match super::client::post(&args.client, &path, &args.action.body()) {
        Ok(v) => v,
        Err(refusal) => return Ok(refusal.exit_code(EXIT_INVALID)),
    };
    let id = command["id"].as_i64().unwrap_or(0);
    if !args.no_wait {
        command = match super::client::wait_for_command(&args.client, command, WAIT) {
            Ok(v) => v,
            Err(code) => return Ok(code),
        };
    }
    let outcome = command["outcome"].as_str().unwrap_or("?");
    if args.client.json {
        println!("{command}");
    } else {
        let result = command["result"]
            .as_u64()
            .map(|r| format!(" (MAV_RESULT {r})"))
            .unwrap_or_default();
        println!(
            "command {id}: {} to {}: {}{result}",
            command["description"].as_str().unwrap_or("?"),
            args.vehicle,
            outcome.replace('_', " ")
        );
    }
    Ok(match outcome {
        "accepted" => ExitCode::SUCCESS,
        "pending" | "in_progress" if args.no_wait => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Why a request got no usable answer.
pub enum Refusal {
    /// Unreachable or refused: exit with this code (the message is printed).
    Exit(ExitCode),
    /// The daemon found the request wrong; its message.
    Invalid(String),
}

impl Refusal {
    /// The exit code for it: its own, or `invalid` for a wrong request, whose message is
    /// printed.
    pub fn exit_code(self, invalid: u8) -> ExitCode {
        match self {
            Refusal::Exit(code) => code,
            Refusal::Invalid(message) => {
                eprintln!("error: {message}");
                ExitCode::from(invalid)
            }
        }
    }
}
