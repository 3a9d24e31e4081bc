//! `signing enable|disable|status VEHICLE`: a vehicle's MAVLink 2 signing key through a
//! running daemon (an admin's token).
//!
//! `enable` makes the key (random, or from `--passphrase` as MAVProxy and QGroundControl
//! derive it), installs it with SETUP_SIGNING and waits until the vehicle signs with it; the
//! key is printed this once, for the ground stations that will command the vehicle. Exit
//! codes: 0 done, 1 the vehicle did not take it, 3 the daemon could not be reached, 4 an
//! admin's token is needed, 5 the request was wrong.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::client::ClientArgs;

const EXIT_INVALID: u8 = 5;
/// Longer than SETUP_SIGNING's four sends 1.5 s apart.
const WAIT: Duration = Duration::from_secs(15);

#[derive(clap::Subcommand)]
pub enum SigningCommand {
    /// Install a signing key on the vehicle; the station signs for it from then on.
    Enable {
        vehicle: String,
        /// Derive the key from this passphrase (at least 8 characters) instead of a random one.
        #[arg(long, env = "TRELLIS_SIGNING_PASSPHRASE", hide_env_values = true)]
        passphrase: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Turn the vehicle's signing off and forget its key.
    Disable {
        vehicle: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Whether the vehicle signs, and the frames to and from it the station dropped.
    Status {
        vehicle: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn run(command: SigningCommand) -> anyhow::Result<ExitCode> {
    Ok(match command {
        SigningCommand::Enable {
            vehicle,
            passphrase,
            client,
        } => {
            let body = match passphrase {
                Some(p) => json!({ "passphrase": p }),
                None => json!({}),
            };
            let path = format!("/api/v1/vehicles/{vehicle}/signing");
            match super::client::send(&client, "POST", &path, &body) {
                Ok(answer) => {
                    let key = answer["key"].as_str().unwrap_or("?").to_string();
                    let code = wait(&client, &vehicle, &answer["command"]);
                    if !client.json {
                        println!("signing key for {vehicle} (shown once): {key}");
                    }
                    code
                }
                Err(refusal) => refusal.exit_code(EXIT_INVALID),
            }
        }
        SigningCommand::Disable { vehicle, client } => {
            let path = format!("/api/v1/vehicles/{vehicle}/signing");
            match super::client::send(&client, "DELETE", &path, &Value::Null) {
                Ok(command) => wait(&client, &vehicle, &command),
                Err(refusal) => refusal.exit_code(EXIT_INVALID),
            }
        }
        SigningCommand::Status { vehicle, client } => {
            let path = format!("/api/v1/vehicles/{vehicle}/signing");
            match super::client::get(&client, &path) {
                Ok(s) if client.json => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                Ok(s) => {
                    println!(
                        "{vehicle}: signing {}; {} frames accepted signed, {} unsigned from the \
                         vehicle; dropped: {} unsigned, {} badly signed, {} replayed",
                        if s["on"] == true { "on" } else { "off" },
                        s["accepted"],
                        s["unsigned_from_vehicle"],
                        s["rejected_unsigned"],
                        s["rejected_bad"],
                        s["rejected_replayed"]
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
    })
}

/// Waits for the installation (or removal) to end and says how.
fn wait(client: &ClientArgs, vehicle: &str, command: &Value) -> ExitCode {
    let id = command["id"].as_i64().unwrap_or(0);
    let command = match super::client::wait_for_command(client, command.clone(), WAIT) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let outcome = command["outcome"].as_str().unwrap_or("?");
    if client.json {
        println!("{command}");
    } else {
        println!(
            "command {id}: {} on {vehicle}: {}",
            command["description"].as_str().unwrap_or("?"),
            outcome.replace('_', " ")
        );
    }
    if outcome == "accepted" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
