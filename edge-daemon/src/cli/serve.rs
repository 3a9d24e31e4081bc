//! `serve` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use edge_daemon::config::Config;
use edge_daemon::daemon::{shutdown_signal, Daemon};
use edge_daemon::link::{Endpoint, LinkConfig};

use super::{parse_endpoint, parse_listen, ConfigArgs};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// An endpoint to open, in addition to the config file's (repeatable), e.g.
    /// serial:/dev/ttyUSB0:57600, udpin:0.0.0.0:14550, udpout:10.0.0.5:14550, tcp:HOST:PORT.
    #[arg(long = "link", value_parser = parse_endpoint)]
    links: Vec<Endpoint>,
    /// Address of the local API (overrides the config file).
    #[arg(long, value_parser = parse_listen)]
    api_listen: Option<SocketAddr>,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    config
        .links
        .extend(args.links.into_iter().map(LinkConfig::from));
    if let Some(addr) = args.api_listen {
        config.api.listen = addr;
    }
    config.validate()?;
    if config.links.is_empty() {
        tracing::warn!("no links configured: add --link ENDPOINT or [[links]] in the config");
    }
    runtime()?.block_on(async {
        let daemon = Daemon::start(&config).await?;
        daemon.notify_systemd();
        shutdown_signal().await;
        daemon.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated vehicles.
    #[arg(long, default_value_t = 5)]
    vehicles: u8,
    /// Address of the local API and web UI.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    api_listen: SocketAddr,
    /// Where the demo keeps its database.
    #[arg(long, default_value = "trellis-demo")]
    data_dir: PathBuf,
}

/// The daemon, a simulated fleet surveying vineyard blocks, and a GCS port for
/// QGroundControl, all on loopback.
pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let vehicle_port = free_udp_port()?;
    let config = Config {
        data_dir: args.data_dir,
        links: vec![
            LinkConfig::from(Endpoint::UdpIn(([127, 0, 0, 1], vehicle_port).into())),
            // QGroundControl listens on 14550 by default: it sees the fleet with no setup.
            LinkConfig::from(Endpoint::UdpOut("127.0.0.1:14550".into())),
        ],
        api: edge_daemon::config::ApiConfig {
            listen: args.api_listen,
        },
        ..Config::default()
    };
    runtime()?.block_on(async {
        let daemon = Daemon::start(&config).await?;
        let sim = edge_daemon::sim::SimConfig {
            vehicles: args.vehicles,
            ..edge_daemon::sim::SimConfig::new(Endpoint::UdpOut(format!(
                "127.0.0.1:{vehicle_port}"
            )))
        };
        let fleet = tokio::spawn(edge_daemon::sim::run(sim));
        let url = format!("http://{}", daemon.api_addr);
        println!(
            "Trellis demo: {} simulated copters surveying vineyard blocks",
            args.vehicles
        );
        println!("  local API:      {url}/api/v1/vehicles");
        println!("  health:         {url}/api/v1/health");
        println!("  QGroundControl: listen on UDP 14550 (its default) to fly with them");
        println!("  data:           {}", config.data_dir.display());
        println!("Ctrl-C to stop.");
        tokio::select! {
            _ = shutdown_signal() => {}
            r = fleet => { tracing::error!("simulator stopped: {r:?}"); }
        }
        daemon.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
