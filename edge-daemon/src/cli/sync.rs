//! `sync enroll` and `sync status`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::client::{get, ClientArgs};
use super::ConfigArgs;

#[derive(clap::Subcommand)]
pub enum SyncCommand {
    /// Install an enrollment bundle from `cloud-relay edge enroll`; sync starts with the daemon.
    Enroll {
        bundle: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Whether a running daemon is syncing, and how far behind it is.
    Status(ClientArgs),
}

pub fn run(cmd: SyncCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SyncCommand::Enroll { bundle, config } => {
            let config = config.load()?;
            let installed = edge_daemon::sync::enroll(&bundle, &config.data_dir)?;
            println!(
                "enrolled as {}/{} with relay {}; (re)start the daemon to sync",
                installed.org, installed.edge, installed.relay
            );
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::Status(args) => {
            let s = match get(&args, "/api/v1/sync") {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            if args.json {
                println!("{s}");
            } else if s["enrolled"] != true {
                println!("not enrolled: run `edge-daemon sync enroll BUNDLE`");
            } else {
                println!(
                    "{} -> {}: {}, relay acked {}, backlog {} rows, sent {} rows in {} bytes, relay lost {} rows{}",
                    s["enrolled_as"].as_str().unwrap_or("?"),
                    s["relay"].as_str().unwrap_or("?"),
                    if s["connected"] == true { "connected" } else { "disconnected" },
                    s["relay_acked"],
                    s["backlog_rows"],
                    s["rows_sent"],
                    s["bytes_sent"],
                    s["relay_lost_rows"],
                    s["last_error"]
                        .as_str()
                        .map_or(String::new(), |e| format!("; last error: {e}")),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
