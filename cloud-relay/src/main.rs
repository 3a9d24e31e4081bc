//! `cloud-relay`: the relay daemon and its admin commands, one binary.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use cloud_relay::config::Config;
use cloud_relay::relay::{self, Relay, DB_FILE};
use cloud_relay::store::hq::{Role, Share};
use cloud_relay::store::{RelayStore, Store};
use sync_protocol::identity::{validate_name, EdgeIdentity};

#[derive(Parser)]
#[command(name = "cloud-relay", version, about = "Trellis cloud relay")]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML configuration (see cloud-relay.example.toml).
    #[arg(long, short = 'c', global = true, env = "TRELLIS_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        /// QUIC listen address (overrides the config file).
        #[arg(long)]
        quic_listen: Option<SocketAddr>,
        /// HQ API listen address (overrides the config file).
        #[arg(long)]
        hq_listen: Option<SocketAddr>,
    },
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Ground stations.
    #[command(subcommand)]
    Edge(EdgeCommand),
    /// HQ API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Sharing agreements between organizations (the common operating picture).
    #[command(subcommand)]
    Share(ShareCommand),
    /// What the relay holds: per organization, its stations (sync marks, lost ranges) and
    /// vehicles. Reads the store, so it works whether or not the relay is running.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bearer token for one organization and role; prints the secret once.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// Who or what holds it, for the audit trail.
        #[arg(long, default_value = "hq")]
        name: String,
    },
}

#[derive(Subcommand)]
enum ShareCommand {
    /// Let org TO see org FROM's vehicles in its COP.
    Grant {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Only these vehicles (names or autopilot uids, comma-separated); default all.
        #[arg(long, value_delimiter = ',')]
        vehicles: Vec<String>,
        /// Only while inside this area: a GeoJSON file (Polygon, MultiPolygon, Feature).
        #[arg(long)]
        area: Option<PathBuf>,
        /// Snap shared positions to a grid of this many metres.
        #[arg(long)]
        coarsen: Option<f64>,
    },
    /// End every agreement from FROM to TO, at once (open HQ streams included).
    Revoke {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Agreements that let ORG see others' vehicles.
    List {
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Create { name: String },
    /// List organizations.
    List,
}

#[derive(Subcommand)]
enum EdgeCommand {
    /// Enroll a ground station: issue its certificate and write its bundle.
    Enroll {
        #[arg(long)]
        org: String,
        #[arg(long)]
        edge: String,
        /// Where to write the bundle (it holds a private key; written 0600).
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Refuse a ground station from now on, also on an open connection.
    Revoke {
        #[arg(long)]
        org: String,
        #[arg(long)]
        edge: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if matches!(cli.command, Command::Serve { .. }) {
            // async-nats logs each of its reconnection attempts at info, a few a second at
            // first; the cluster module says once that NATS is gone and once that it is back.
            "info,async_nats=warn"
        } else {
            "warn"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = match &cli.config.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &cli.config.data_dir {
        config.data_dir = dir.clone();
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = cloud_relay::store::open(&config.store.url, &config.data_dir.join(DB_FILE))?;
    match cli.command {
        Command::Serve {
            quic_listen,
            hq_listen,
        } => {
            if let Some(addr) = quic_listen {
                config.quic.listen = addr;
            }
            if let Some(addr) = hq_listen {
                config.hq.listen = addr;
            }
            serve(config, store)
        }
        Command::Token(TokenCommand::Create { org, role, name }) => {
            let role = Role::parse(&role).context("role")?;
            let secret = store.create_token(&org, role, &name)?;
            println!("{secret}");
            Ok(())
        }
        Command::Share(ShareCommand::Grant {
            from,
            to,
            vehicles,
            area,
            coarsen,
        }) => {
            if from == to {
                anyhow::bail!("an organization already sees its own vehicles");
            }
            let area = match area {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    cloud_relay::geo::Area::parse(&text)
                        .with_context(|| path.display().to_string())?;
                    Some(text)
                }
                None => None,
            };
            if coarsen.is_some_and(|m| !(1.0..=100_000.0).contains(&m)) {
                anyhow::bail!("--coarsen must be between 1 and 100000 metres");
            }
            let id = store.grant_share(&Share {
                id: 0,
                from_org: from.clone(),
                to_org: to.clone(),
                vehicles,
                area,
                coarsen_m: coarsen,
                created_us: 0,
            })?;
            println!("sharing agreement {id}: {to} now sees {from}'s vehicles as granted");
            Ok(())
        }
        Command::Share(ShareCommand::Revoke { from, to }) => {
            let n = store.revoke_share(&from, &to)?;
            println!("revoked {n} agreement(s) from {from} to {to}");
            Ok(())
        }
        Command::Share(ShareCommand::List { to }) => {
            for s in store.shares_to(&to)? {
                println!("{}", serde_json::to_string(&s)?);
            }
            Ok(())
        }
        Command::Org(OrgCommand::Create { name }) => {
            validate_name(&name)?;
            store.create_org(&name)?;
            println!("created organization {name}");
            Ok(())
        }
        Command::Org(OrgCommand::List) => {
            for org in store.orgs()? {
                println!("{org}");
            }
            Ok(())
        }
        Command::Status { json } => {
            let mut orgs = Vec::new();
            for org in store.orgs()? {
                let edges = store.edges(&org)?;
                let vehicles = store.fleet(&org)?;
                orgs.push(serde_json::json!({
                    "org": org, "edges": edges, "vehicles": vehicles.len(),
                    "telemetry_rows": store.telemetry_count(&org)?,
                }));
            }
            if json {
                println!("{}", serde_json::json!({ "orgs": orgs }));
                return Ok(());
            }
            for o in &orgs {
                println!(
                    "{}: {} vehicles, {} telemetry rows",
                    o["org"].as_str().unwrap_or_default(),
                    o["vehicles"],
                    o["telemetry_rows"]
                );
                for e in o["edges"].as_array().into_iter().flatten() {
                    let gaps = e["gaps"].as_array().map_or(0, Vec::len);
                    println!(
                        "  {:<20} {:<8} telemetry acked {:>10}  events acked {:>6}{}",
                        e["edge"].as_str().unwrap_or_default(),
                        if e["revoked"] == true {
                            "revoked"
                        } else {
                            "enrolled"
                        },
                        e["telemetry_acked"].as_u64().unwrap_or(0),
                        e["events_acked"].as_u64().unwrap_or(0),
                        if gaps > 0 {
                            format!("  {gaps} range(s) lost and recorded")
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Edge(EdgeCommand::Enroll { org, edge, output }) => {
            let bundle = relay::enroll(&config, &*store, &org, &edge)?;
            write_private(&output, &bundle.to_toml())?;
            println!(
                "enrolled {org}/{edge}; bundle written to {}",
                output.display()
            );
            Ok(())
        }
        Command::Edge(EdgeCommand::Revoke { org, edge }) => {
            let id = EdgeIdentity::new(&org, &edge)?;
            if store.revoke_edge(&id)? {
                println!("revoked {id}");
            } else {
                println!("{id} was not active");
            }
            Ok(())
        }
    }
}

fn serve(config: Config, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let signals = trellis_web::lifecycle::StopSignals::install()?;
        let relay = Relay::start(&config, store.clone()).await?;
        notify_systemd(store);
        relay.run_until(signals.stopping()).await
    });
    // A blocking store call for a client that went away gets a moment, not an unbounded wait.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// READY=1 once listening; WATCHDOG=1 only while the store still answers, so a wedged
/// database gets the relay restarted. The interval is read as libsystemd reads it.
fn notify_systemd(store: Arc<dyn RelayStore>) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let Some(interval) = trellis_web::lifecycle::watchdog_interval() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval / 2).await;
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.orgs()).await {
                Ok(Ok(_)) => {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
                other => tracing::error!("store not answering ({other:?}); withholding watchdog"),
            }
        }
    });
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
