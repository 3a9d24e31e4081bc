//! `params`: a vehicle's parameters through a running daemon: list, read, set, and the
//! fleet's profiles (`firmware-configs/`) compared and applied.
//!
//! A PROFILE is a file (read here and sent) or the name of one the daemon has built in
//! (`ardupilot/copter-survey.param`). Exit codes: `diff` 0 the vehicle matches, 1 it
//! differs, 2 it could not be compared (no such profile, a bad one, a list that could not be
//! read); `apply` and `set` 0 when every parameter was set and nothing is missing, 1
//! otherwise; 3 the daemon could not be reached, 4 a token was refused.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::client::ClientArgs;
use super::command::Refusal;

/// Could not compare, or the request was wrong.
const EXIT_CANNOT: u8 = 2;
/// Longer than a job may take: ~1,300 parameters over a 57600-baud radio with losses.
const WAIT: Duration = Duration::from_secs(300);

#[derive(clap::Subcommand)]
pub enum ParamsCommand {
    /// The parameters the station last read from the vehicle, and its drift from its profile.
    List {
        vehicle: String,
        /// Only names starting with this.
        prefix: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read the vehicle's whole list again (a pilot's token).
    Fetch {
        vehicle: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read parameters from the vehicle now (a pilot's token).
    Get {
        vehicle: String,
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set parameters, NAME=VALUE, each read back (a pilot's token).
    Set {
        vehicle: String,
        #[arg(required = true, value_parser = name_value)]
        values: Vec<(String, f64)>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Compare the vehicle with a profile; nothing is changed.
    Diff {
        vehicle: String,
        profile: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set what differs from a profile, in its order, each read back (a pilot's token;
    /// never while armed). Says when a reboot is needed; apply again after it.
    Apply {
        vehicle: String,
        profile: String,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Changes of the vehicle's parameters, newest first.
    History {
        vehicle: String,
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A number as people write it: `4000`, `21.6` (a parameter is a 32-bit float at most, so
/// not `21.600000381469727`).
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        Some(x) => (x as f32).to_string(),
        None => v.to_string(),
    }
}

fn name_value(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write NAME=VALUE"))?;
    let value = value
        .parse()
        .map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
    Ok((name.to_string(), value))
}

pub fn run(command: ParamsCommand) -> anyhow::Result<ExitCode> {
    Ok(match command {
        ParamsCommand::List {
            vehicle,
            prefix,
            client,
        } => list(&client, &vehicle, prefix.as_deref()),
        ParamsCommand::Fetch { vehicle, client } => {
            let path = format!("/api/v1/vehicles/{vehicle}/params/fetch");
            job(&client, "POST", &path, &json!({}))
        }
        ParamsCommand::Get {
            vehicle,
            names,
            client,
        } => {
            let path = format!("/api/v1/vehicles/{vehicle}/params/read");
            job(&client, "POST", &path, &json!({ "names": names }))
        }
        ParamsCommand::Set {
            vehicle,
            values,
            client,
        } => {
            let body: serde_json::Map<String, Value> =
                values.into_iter().map(|(n, v)| (n, json!(v))).collect();
            let path = format!("/api/v1/vehicles/{vehicle}/params");
            job(&client, "PUT", &path, &Value::Object(body))
        }
        ParamsCommand::Diff {
            vehicle,
            profile,
            client,
        } => diff(&client, &vehicle, &profile)?,
        ParamsCommand::Apply {
            vehicle,
            profile,
            dry_run,
            client,
        } => {
            if dry_run {
                diff(&client, &vehicle, &profile)?
            } else {
                let body = profile_body(&profile)?;
                let path = format!("/api/v1/vehicles/{vehicle}/params/apply");
                job(&client, "POST", &path, &body)
            }
        }
        ParamsCommand::History {
            vehicle,
            name,
            client,
        } => history(&client, &vehicle, name.as_deref()),
    })
}

/// A profile given as a file is sent with its text; otherwise it names a built-in one.
fn profile_body(profile: &str) -> anyhow::Result<Value> {
    let path = std::path::Path::new(profile);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {profile}: {e}"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| profile.to_string());
        return Ok(json!({ "profile": name, "text": text }));
    }
    Ok(json!({ "profile": profile }))
}

fn list(client: &ClientArgs, vehicle: &str, prefix: Option<&str>) -> ExitCode {
    let path = format!("/api/v1/vehicles/{vehicle}/params");
    let view = match super::client::get_all(client, &path, "params") {
        Ok(v) => v,
        Err(code) => return code,
    };
    if client.json {
        println!("{view}");
        return ExitCode::SUCCESS;
    }
    let params = view["params"].as_array().cloned().unwrap_or_default();
    for p in &params {
        let name = p["name"].as_str().unwrap_or("?");
        if prefix.is_none_or(|x| name.starts_with(x)) {
            println!("{name:<16} {}", number(&p["value"]));
        }
    }
    let complete = if view["complete"].as_bool() == Some(true) {
        "complete"
    } else {
        "incomplete: `params fetch` reads it all"
    };
    println!(
        "{} of {} parameters ({complete})",
        params.len(),
        view["count"]
    );
    match view["profile"].as_str() {
        Some(profile) => match view["drift"]["differences"].as_array() {
            Some(d) if d.is_empty() => println!("follows {profile}: no drift"),
            Some(d) => {
                println!("follows {profile}: {} drifted", d.len());
                print_differences(d);
            }
            None => println!("follows {profile}"),
        },
        None => println!("no profile applied"),
    }
    ExitCode::SUCCESS
}

fn diff(client: &ClientArgs, vehicle: &str, profile: &str) -> anyhow::Result<ExitCode> {
    let body = profile_body(profile)?;
    let path = format!("/api/v1/vehicles/{vehicle}/params/diff");
    let mut answer = super::client::post(client, &path, &body);
    // The list has never been read whole: read it, then compare.
    if matches!(&answer, Err(Refusal::Invalid(m)) if m.contains("params/fetch")) {
        let fetch = format!("/api/v1/vehicles/{vehicle}/params/fetch");
        let quiet = ClientArgs {
            json: true,
            ..client.clone()
        };
        match wait_for(&quiet, "POST", &fetch, &json!({})) {
            Ok(job) if job["outcome"] == "accepted" => {}
            Ok(job) => {
                eprintln!(
                    "error: could not read {vehicle}'s parameters: {}",
                    job["detail"]["error"].as_str().unwrap_or("?")
                );
                return Ok(ExitCode::from(EXIT_CANNOT));
            }
            Err(code) => return Ok(code),
        }
        answer = super::client::post(client, &path, &body);
    }
    let comparison = match answer {
        Ok(v) => v,
        Err(refusal) => return Ok(refusal.exit_code(EXIT_CANNOT)),
    };
    let differences = comparison["differences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if client.json {
        println!("{comparison}");
    } else {
        for w in comparison["warnings"].as_array().into_iter().flatten() {
            println!("warning: {}", w.as_str().unwrap_or("?"));
        }
        print_differences(&differences);
        println!(
            "{}: {} match, {} differ",
            comparison["profile"].as_str().unwrap_or(profile),
            comparison["matching"],
            differences.len()
        );
    }
    Ok(if differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_differences(differences: &[Value]) {
    for d in differences {
        let name = match d["vehicle_name"].as_str() {
            Some(on_vehicle) => format!("{} ({on_vehicle})", d["name"].as_str().unwrap_or("?")),
            None => d["name"].as_str().unwrap_or("?").to_string(),
        };
        let vehicle = if d["vehicle"].is_null() {
            "missing".to_string()
        } else {
            number(&d["vehicle"])
        };
        let note = d["note"]
            .as_str()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default();
        println!(
            "{name:<32} profile {:<10} vehicle {vehicle}{note}",
            number(&d["profile"])
        );
    }
}

/// Starts a job (fetch, read, set, apply), waits for its end and prints what it did.
fn job(client: &ClientArgs, method: &str, path: &str, body: &Value) -> ExitCode {
    let job = match wait_for(client, method, path, body) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let detail = &job["detail"];
    if client.json {
        println!("{job}");
    } else {
        println!(
            "command {}: {}: {}",
            job["id"],
            job["description"].as_str().unwrap_or("?"),
            job["outcome"].as_str().unwrap_or("?").replace('_', " ")
        );
        if let Some(error) = detail["error"].as_str() {
            println!("  {error}");
        }
        if let Some(count) = detail["count"].as_u64() {
            println!(
                "  {count} parameters read, {} asked for again",
                detail["re_requested"].as_u64().unwrap_or(0)
            );
        }
        for r in detail["read"].as_array().into_iter().flatten() {
            println!(
                "  {:<16} {}",
                r["name"].as_str().unwrap_or("?"),
                number(&r["value"])
            );
        }
        for c in detail["set"].as_array().into_iter().flatten() {
            println!(
                "  set {:<16} {} (was {})",
                c["name"].as_str().unwrap_or("?"),
                number(&c["value"]),
                number(&c["previous"])
            );
        }
        for f in detail["failed"].as_array().into_iter().flatten() {
            println!(
                "  FAILED {:<16} {}",
                f["name"].as_str().unwrap_or("?"),
                f["error"].as_str().unwrap_or("?")
            );
        }
        for w in detail["warnings"].as_array().into_iter().flatten() {
            println!("  warning: {}", w.as_str().unwrap_or("?"));
        }
        if let Some(missing) = detail["missing"].as_array().filter(|m| !m.is_empty()) {
            println!("  not set:");
            print_differences(missing);
        }
        let reboot = &detail["reboot"];
        let names = |key: &str| -> Vec<String> {
            reboot[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        };
        let takes_effect = names("takes_effect");
        if !takes_effect.is_empty() {
            println!("  reboot for {} to take effect", takes_effect.join(", "));
        }
        let may_appear = names("may_appear");
        if !may_appear.is_empty() {
            println!(
                "  reboot, then apply again: {} may appear once the enabled feature starts",
                may_appear.join(", ")
            );
        }
    }
    let all_set =
        job["outcome"] == "accepted" && detail["missing"].as_array().is_none_or(|m| m.is_empty());
    if all_set {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Starts a job and polls it until it ends.
fn wait_for(
    client: &ClientArgs,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<Value, ExitCode> {
    let job = match super::client::send(client, method, path, body) {
        Ok(v) => v,
        Err(refusal) => return Err(refusal.exit_code(EXIT_CANNOT)),
    };
    super::client::wait_for_command(client, job, WAIT)
}

fn history(client: &ClientArgs, vehicle: &str, name: Option<&str>) -> ExitCode {
    let query = name.map(|n| format!("?name={n}")).unwrap_or_default();
    let path = format!("/api/v1/vehicles/{vehicle}/params/history{query}");
    let answer = match super::client::get(client, &path) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if client.json {
        println!("{answer}");
        return ExitCode::SUCCESS;
    }
    for c in answer["changes"].as_array().into_iter().flatten() {
        let when = c["t_us"].as_u64().unwrap_or(0);
        let when =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_micros(when));
        let by = c["command"]
            .as_i64()
            .map(|id| format!("command {id}"))
            .unwrap_or_else(|| "elsewhere".into());
        println!(
            "{when}  {:<16} {} -> {}  ({by})",
            c["name"].as_str().unwrap_or("?"),
            number(&c["previous"]),
            number(&c["value"])
        );
    }
    ExitCode::SUCCESS
}
