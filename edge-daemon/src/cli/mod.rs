//! The command line: parse, call the library, print. Output is for people unless `--json`.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (clap), 3 the daemon could not be reached,
//! 4 the daemon refused (no token, an unknown one, or a role too weak).

mod client;
mod command;
mod demo_hq;
mod export;
mod params;
mod plan;
mod serve;
mod signing;
mod sim;
mod sync;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use edge_daemon::link::Endpoint;

#[derive(Parser)]
#[command(name = "edge-daemon", version, about = "Trellis ground station daemon")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the daemon.
    Serve(serve::ServeArgs),
    /// Run the daemon with a simulated fleet on loopback; needs no configuration.
    Demo(serve::DemoArgs),
    /// Fly simulated ArduPilot-like copters over a link.
    Sim(sim::SimArgs),
    /// What a running daemon knows about itself.
    Status(client::ClientArgs),
    /// The vehicles a running daemon hears.
    Vehicles(client::ClientArgs),
    /// Send a command to a vehicle through a running daemon and wait for its answer
    /// (a pilot's token): `command V-03 arm`, `command V-03 mode LOITER`, `command 3 rtl`.
    Command(command::CommandArgs),
    /// A vehicle's parameters, and the fleet's profiles compared and applied:
    /// `params diff V-03 ardupilot/copter-survey.param`, `params set V-03 RTL_ALT=4000`.
    #[command(subcommand)]
    Params(params::ParamsCommand),
    /// Plan a mission over a field (a pilot's token), and upload it with `--upload V-03`:
    /// `plan block-3 --alt-m 30 --speed-mps 4 --row-spacing-m 2.5`.
    Plan(plan::PlanArgs),
    /// MAVLink 2 signing of a vehicle (an admin's token): `signing enable V-03`, `signing
    /// status V-03`, `signing disable V-03`.
    #[command(subcommand)]
    Signing(signing::SigningCommand),
    /// Sync with the cloud relay.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Who may use the API and web UI: tokens with roles.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Export stored data.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

/// Exit code when the daemon's API cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code when the daemon refuses the request's token.
pub const EXIT_REFUSED: u8 = 4;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(
        cli.command,
        Commands::Serve(_) | Commands::Demo(_) | Commands::Sim(_)
    );
    if long_running {
        edge_daemon::memory::limit_arenas();
    }
    init_tracing(long_running);
    let result = match cli.command {
        Commands::Serve(args) => serve::serve(args),
        Commands::Demo(args) => serve::demo(args),
        Commands::Sim(args) => sim::run(args),
        Commands::Status(args) => client::status(args),
        Commands::Vehicles(args) => client::vehicles(args),
        Commands::Command(args) => command::run(args),
        Commands::Params(cmd) => params::run(cmd),
        Commands::Plan(args) => plan::run(args),
        Commands::Signing(cmd) => signing::run(cmd),
        Commands::Export(cmd) => export::run(cmd),
        Commands::Sync(cmd) => sync::run(cmd),
        Commands::Token(cmd) => token::run(cmd),
        Commands::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "edge-daemon",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(long_running: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if long_running { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Flags shared by commands that read the configuration.
#[derive(clap::Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file (see edge-daemon.example.toml).
    #[arg(long, short = 'c', env = "TRELLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<edge_daemon::config::Config> {
        let mut config = match &self.config {
            Some(path) => edge_daemon::config::Config::load(path)?,
            None => edge_daemon::config::Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    s.parse()
        .map_err(|e: edge_daemon::link::endpoint::EndpointError| e.to_string())
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 0.0.0.0:8080)"))
}
