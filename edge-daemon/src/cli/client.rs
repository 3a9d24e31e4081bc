//! `status` and `vehicles`: ask a running daemon over its API; the requests `command` makes.

use std::process::ExitCode;

use serde_json::Value;

#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// The daemon's API.
    #[arg(
        long,
        global = true,
        env = "TRELLIS_API",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// An API token (`edge-daemon token create`); a viewer's is enough.
    #[arg(long, global = true, env = "TRELLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

pub fn get(args: &ClientArgs, path: &str) -> Result<Value, ExitCode> {
    get_query(args, path, &[])
}

/// GETs every page of a list (the daemon pages lists by `limit` and `after` and answers
/// the next page's `after` as `next`): the last page's answer, with `items` holding the
/// items of all of them.
pub fn get_all(args: &ClientArgs, path: &str, items: &str) -> Result<Value, ExitCode> {
    let mut all: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1000".to_string())];
        query.extend(after.clone().map(|a| ("after", a)));
        let mut page = get_query(args, path, &query)?;
        if let Some(list) = page[items].as_array_mut() {
            all.append(list);
        }
        match page["next"].as_str() {
            // A daemon that answered the same `next` again would never end the list.
            Some(next) if after.as_deref() != Some(next) => after = Some(next.to_string()),
            _ => {
                page[items] = Value::Array(all);
                return Ok(page);
            }
        }
    }
}

fn get_query(args: &ClientArgs, path: &str, query: &[(&str, String)]) -> Result<Value, ExitCode> {
    let url = format!("{}{path}", args.api.trim_end_matches('/'));
    let mut request = ureq::get(&url);
    for (key, value) in query {
        request = request.query(key, value);
    }
    if let Some(token) = &args.token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let result = request
        .call()
        .and_then(|mut r| r.body_mut().read_json::<Value>());
    result.map_err(|e| match e {
        ureq::Error::StatusCode(status @ (401 | 403 | 429)) => {
            eprintln!(
                "error: the daemon at {url} refused ({status}): pass a token with --token or \
                 TRELLIS_TOKEN (edge-daemon token create --name NAME --role viewer)"
            );
            ExitCode::from(super::EXIT_REFUSED)
        }
        e => {
            eprintln!("error: cannot reach the daemon at {url}: {e}");
            ExitCode::from(super::EXIT_UNREACHABLE)
        }
    })
}

/// POSTs a JSON body. A refusal of the request itself (404, 409, 422) comes back with the
/// daemon's message; unreachable or refused tokens are printed and become exit codes.
pub fn post(args: &ClientArgs, path: &str, body: &Value) -> Result<Value, super::command::Refusal> {
    send(args, "POST", path, body)
}

/// Sends a JSON body with `method` (POST, PUT); answers as [`post`].
pub fn send(
    args: &ClientArgs,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<Value, super::command::Refusal> {
    use super::command::Refusal;
    let url = format!("{}{path}", args.api.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let auth = args.token.as_ref().map(|t| format!("Bearer {t}"));
    let sent = if method == "DELETE" {
        let mut request = agent.delete(&url);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        request.call()
    } else {
        let request = match method {
            "PUT" => agent.put(&url),
            _ => agent.post(&url),
        };
        let mut request = request.header("Content-Type", "application/json");
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        request.send(body.to_string())
    };
    let mut response = sent.map_err(|e| {
        eprintln!("error: cannot reach the daemon at {url}: {e}");
        Refusal::Exit(ExitCode::from(super::EXIT_UNREACHABLE))
    })?;
    let status = response.status().as_u16();
    let answer: Value = response.body_mut().read_json().unwrap_or(Value::Null);
    match status {
        200..=299 => Ok(answer),
        401 | 403 | 429 => {
            eprintln!(
                "error: the daemon at {url} refused ({status}): {}",
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or("pass a pilot's token with --token or TRELLIS_TOKEN")
            );
            Err(Refusal::Exit(ExitCode::from(super::EXIT_REFUSED)))
        }
        400..=499 => Err(Refusal::Invalid(
            answer["error"]["message"]
                .as_str()
                .unwrap_or("the daemon refused the request")
                .to_string(),
        )),
        _ => {
            eprintln!("error: the daemon at {url} answered {status}: {answer}");
            Err(Refusal::Exit(ExitCode::FAILURE))
        }
    }
}

/// Polls command (or job) `first` (its row as the POST answered it) until it ends or `wait`
/// has passed; its last row.
pub fn wait_for_command(
    args: &ClientArgs,
    first: Value,
    wait: std::time::Duration,
) -> Result<Value, ExitCode> {
    let id = first["id"].as_i64().unwrap_or(0);
    let deadline = std::time::Instant::now() + wait;
    let mut row = first;
    while is_open(&row) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        row = get(args, &format!("/api/v1/commands/{id}"))?;
    }
    Ok(row)
}

/// Whether a command's outcome is still to come.
pub fn is_open(command: &Value) -> bool {
    matches!(command["outcome"].as_str(), Some("pending" | "in_progress"))
}

pub fn status(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let health = match get(&args, "/api/v1/health") {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let links = match get_all(&args, "/api/v1/links", "links") {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "health": health, "links": links["links"] })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let store = &health["store"];
    println!(
        "edge-daemon {} up {:.0} s, {} vehicles, clock from {}",
        health["version"].as_str().unwrap_or("?"),
        health["uptime_s"].as_f64().unwrap_or(0.0),
        health["vehicles"],
        health["time_source"].as_str().unwrap_or("?")
    );
    println!(
        "store {}: {} samples, {} frames committed, {:.1} MB of {:.0} MB quota, {} write errors",
        store["path"].as_str().unwrap_or("?"),
        store["committed_samples"],
        store["committed_frames"],
        store["db_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        store["quota_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        store["write_errors"]
    );
    println!(
        "{:<4} {:<44} {:<5} {:>10} {:>10} {:>8} {:>8}",
        "LINK", "ENDPOINT", "UP", "RX", "TX", "ERRORS", "DROPPED"
    );
    for l in links["links"].as_array().into_iter().flatten() {
        let errors = ["bad_bytes", "crc_errors", "truncated"]
            .iter()
            .map(|k| l[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        println!(
            "{:<4} {:<44} {:<5} {:>10} {:>10} {:>8} {:>8}",
            l["id"],
            l["name"].as_str().unwrap_or("?"),
            if l["connected"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            l["rx_frames"],
            l["tx_frames"],
            errors,
            l["tx_dropped"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn vehicles(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let body = match get_all(&args, "/api/v1/vehicles", "vehicles") {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if args.json {
        println!("{}", body["vehicles"]);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<6} {:>4} {:<10} {:<6} {:>11} {:>12} {:>7} {:>6} {:>5} {:<5}",
        "NAME", "SYS", "MODE", "ARMED", "LAT", "LON", "ALT m", "BATT%", "SATS", "LINK"
    );
    for v in body["vehicles"].as_array().into_iter().flatten() {
        let pos = &v["position"];
        println!(
            "{:<6} {:>4} {:<10} {:<6} {:>11.6} {:>12.6} {:>7.1} {:>6} {:>5} {:<5}",
            v["name"].as_str().unwrap_or("?"),
            v["sysid"].to_string(),
            v["mode"].as_str().unwrap_or("?"),
            if v["armed"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            pos["lat"].as_f64().unwrap_or(f64::NAN),
            pos["lon"].as_f64().unwrap_or(f64::NAN),
            pos["alt_rel_m"].as_f64().unwrap_or(f64::NAN),
            v["battery"]["remaining_pct"]
                .as_i64()
                .map_or("-".to_string(), |p| p.to_string()),
            v["gps"]["satellites"].to_string(),
            v["link"]["state"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
