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
use cloud_relay::store::{RelayStore, SqliteStore};
use cloud_relay::{pki_files, server};
use sync_protocol::enrollment::Bundle;
use sync_protocol::identity::{validate_name, EdgeIdentity};

/// The relay database inside the data directory.
const DB_FILE: &str = "relay.db";

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
    },
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Ground stations.
    #[command(subcommand)]
    Edge(EdgeCommand),
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
            "info"
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
    let store = SqliteStore::open(&config.data_dir.join(DB_FILE))?;
    match cli.command {
        Command::Serve { quic_listen } => {
            if let Some(addr) = quic_listen {
                config.quic.listen = addr;
            }
            serve(config, Arc::new(store))
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
        Command::Edge(EdgeCommand::Enroll { org, edge, output }) => {
            let id = EdgeIdentity::new(&org, &edge)?;
            store.enroll_edge(&id)?;
            let ca = pki_files::ca(&config.data_dir)?;
            let key = ca.issue_edge(&id)?;
            let bundle = Bundle {
                org,
                edge,
                relay: config.quic.public_address.clone(),
                server_name: server_name(&config),
                relay_ca_pem: ca.cert_pem.clone(),
                cert_pem: key.cert_pem,
                key_pem: key.key_pem,
            };
            write_private(&output, &bundle.to_toml())?;
            println!("enrolled {id}; bundle written to {}", output.display());
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

/// The certificate name edges check: the host of the public address when the certificate
/// covers it, else the first configured name.
fn server_name(config: &Config) -> String {
    let host = config
        .quic
        .public_address
        .rsplit_once(':')
        .map_or(config.quic.public_address.as_str(), |(h, _)| h);
    if config.quic.server_names.iter().any(|n| n == host) {
        host.to_string()
    } else {
        config
            .quic
            .server_names
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost".into())
    }
}

fn serve(config: Config, store: Arc<dyn RelayStore>) -> anyhow::Result<()> {
    let ca = pki_files::ca(&config.data_dir)?;
    let relay = pki_files::relay_cert(&config.data_dir, &ca, &config.quic.server_names)?;
    let quic = sync_protocol::transport::server_config(
        relay.cert_der()?,
        relay.key_der()?,
        ca.cert_der()?,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let reset = pki_files::reset_secret(&config.data_dir)?;
        let endpoint = sync_protocol::transport::server_endpoint(quic, config.quic.listen, &reset)
            .with_context(|| format!("QUIC cannot listen on {}", config.quic.listen))?;
        tracing::info!(quic = %endpoint.local_addr()?, data = %config.data_dir.display(), "cloud relay running");
        notify_systemd(store.clone());
        tokio::select! {
            () = server::run(endpoint.clone(), store, Default::default()) => {}
            () = shutdown_signal() => {}
        }
        endpoint.close(server::CLOSE_DONE.into(), b"relay stopping");
        endpoint.wait_idle().await;
        anyhow::Ok(())
    })
}

/// READY=1 once listening; WATCHDOG=1 only while the store still answers, so a wedged
/// database gets the relay restarted. The interval is read as libsystemd reads it.
fn notify_systemd(store: Arc<dyn RelayStore>) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|u| u.parse::<u64>().ok())
        .filter(|u| *u > 0);
    let for_us = std::env::var("WATCHDOG_PID").map_or(true, |pid| {
        pid.parse::<u32>().ok() == Some(std::process::id())
    });
    let Some(usec) = usec.filter(|_| for_us) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_micros(usec / 2)).await;
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

/// SIGINT or SIGTERM (what systemd sends).
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
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
