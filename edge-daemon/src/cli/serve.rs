//! `serve` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use edge_daemon::config::Config;
use edge_daemon::daemon::Daemon;
use edge_daemon::link::{Endpoint, LinkConfig};
use trellis_web::lifecycle::StopSignals;

use super::demo_hq::DemoHq;
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
    /// An MBTiles file for the web UI's offline basemap (overrides the config file).
    #[arg(long)]
    mbtiles: Option<PathBuf>,
    /// Serve the API and web UI over HTTPS with this PEM certificate chain (and --api-key).
    #[arg(long, requires = "api_key")]
    api_cert: Option<PathBuf>,
    /// The private key (PEM) of --api-cert.
    #[arg(long, requires = "api_cert")]
    api_key: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    config
        .links
        .extend(args.links.into_iter().map(LinkConfig::from));
    if let Some(addr) = args.api_listen {
        config.api.listen = addr;
    }
    if let Some(file) = args.mbtiles {
        config.api.mbtiles = file;
    }
    if let (Some(cert), Some(key)) = (args.api_cert, args.api_key) {
        config.api.cert_file = cert;
        config.api.key_file = key;
    }
    config.validate()?;
    if config.links.is_empty() {
        tracing::warn!("no links configured: add --link ENDPOINT or [[links]] in the config");
    }
    block_on(async {
        let signals = StopSignals::install()?;
        edge_daemon::memory::spawn_trim();
        let daemon = Daemon::start(&config).await?;
        daemon.notify_systemd();
        signals.stopping().await;
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
    /// Where the demo keeps its database (the relay's lives in its `relay/` folder).
    #[arg(long, default_value = "trellis-demo")]
    data_dir: PathBuf,
    /// Address of the local cloud relay's HQ API and map (plain HTTP: loopback only).
    #[arg(long, default_value = "127.0.0.1:8081", value_parser = parse_listen)]
    hq_listen: SocketAddr,
}

/// The demo's two ground stations: the one the newcomer opens, and a second one over the hill,
/// so that HQ shows an org's fleet from more than one station.
const DEMO_EDGE: &str = "demo-station";
const DEMO_SECOND_EDGE: &str = "demo-south";
/// The second station's fleet: its own system ids (V-11, V-12), half a kilometre south.
const SECOND_FLEET: u8 = 2;
const SECOND_FIRST_SYSID: u8 = 11;
const SECOND_SOUTH_DEG: f64 = 0.005;

/// One of the demo's stations: its daemon, its simulated fleet, a pilot token.
struct DemoStation {
    daemon: Daemon,
    fleet: tokio::task::JoinHandle<()>,
    url: String,
    token: String,
}

/// A station of the demo; its fields are named `{block} 1`, `{block} 2`, … (records are the
/// org's, so two stations' blocks need names of their own).
async fn demo_station(
    config: &Config,
    sim: edge_daemon::sim::SimConfig,
    block: &str,
) -> anyhow::Result<DemoStation> {
    let token = demo_token(&config.data_dir)?;
    let daemon = Daemon::start(config).await?;
    let url = format!("http://{}", daemon.api_addr);
    demo_fields(&url, &token, &sim, block).await;
    let fleet = tokio::spawn(async move {
        if let Err(e) = edge_daemon::sim::run(sim).await {
            tracing::error!("simulator stopped: {e}");
        }
    });
    Ok(DemoStation {
        daemon,
        fleet,
        url,
        token,
    })
}

/// Two stations with simulated fleets surveying vineyard blocks, a GCS port for
/// QGroundControl, and a cloud relay merging both for HQ, all on loopback.
pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let vehicle_port = free_udp_port()?;
    let config = Config {
        data_dir: args.data_dir.clone(),
        links: vec![
            LinkConfig::from(Endpoint::UdpIn(([127, 0, 0, 1], vehicle_port).into())),
            // QGroundControl listens on 14550 by default: it sees the fleet with no setup.
            LinkConfig::from(Endpoint::UdpOut("127.0.0.1:14550".into())),
        ],
        api: edge_daemon::config::ApiConfig {
            listen: args.api_listen,
            ..Default::default()
        },
        ..Config::default()
    };
    let second_port = free_udp_port()?;
    let second = Config {
        data_dir: args.data_dir.join(DEMO_SECOND_EDGE),
        links: vec![LinkConfig::from(Endpoint::UdpIn(
            ([127, 0, 0, 1], second_port).into(),
        ))],
        api: edge_daemon::config::ApiConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ..Default::default()
        },
        ..Config::default()
    };
    block_on(async {
        let signals = StopSignals::install()?;
        edge_daemon::memory::spawn_trim();
        let hq = DemoHq::start(
            &config.data_dir.join("relay"),
            &[
                (DEMO_EDGE, config.data_dir.as_path()),
                (DEMO_SECOND_EDGE, second.data_dir.as_path()),
            ],
            args.hq_listen,
        )
        .await?;
        let sim = |port: u16| {
            edge_daemon::sim::SimConfig::new(Endpoint::UdpOut(format!("127.0.0.1:{port}")))
        };
        let main = demo_station(
            &config,
            edge_daemon::sim::SimConfig {
                vehicles: args.vehicles,
                ..sim(vehicle_port)
            },
            "Block",
        )
        .await?;
        let mut second_fleet = edge_daemon::sim::SimConfig {
            vehicles: SECOND_FLEET,
            first_sysid: SECOND_FIRST_SYSID,
            ..sim(second_port)
        };
        second_fleet.origin.lat -= SECOND_SOUTH_DEG;
        let south = demo_station(&second, second_fleet, "South block").await?;
        let (url, token) = (&main.url, &main.token);
        println!(
            "Trellis demo: {} simulated copters surveying vineyard blocks, {SECOND_FLEET} more at a second station",
            args.vehicles
        );
        println!("  station UI:     {url}/#token={token}");
        println!("  local API:      curl -H 'Authorization: Bearer {token}' {url}/api/v1/vehicles");
        println!("  health:         {url}/api/v1/health");
        println!("  QGroundControl: listen on UDP 14550 (its default) to fly with them");
        println!("  second station: {}/#token={}", south.url, south.token);
        for line in hq.describe() {
            println!("  {line}");
        }
        println!("  data:           {}", config.data_dir.display());
        println!("Ctrl-C to stop.");
        let DemoStation {
            daemon, mut fleet, ..
        } = main;
        tokio::select! {
            () = signals.stopping() => {}
            _ = &mut fleet => {}
        }
        fleet.abort();
        south.fleet.abort();
        daemon.stop().await;
        south.daemon.stop().await;
        hq.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// The vineyard blocks the simulated copters survey, as field records, entered through
/// the station's API as a pilot would. A failure is reported, not fatal: the demo still runs.
async fn demo_fields(url: &str, token: &str, sim: &edge_daemon::sim::SimConfig, block: &str) {
    let blocks = edge_daemon::sim::vineyard_blocks(sim.origin, usize::from(sim.vehicles));
    let (url, token, block) = (url.to_string(), token.to_string(), block.to_string());
    let put = tokio::task::spawn_blocking(move || -> Result<(), ureq::Error> {
        for (i, corners) in blocks.iter().enumerate() {
            let polygon: Vec<[f64; 2]> = corners.iter().map(|p| [p.lat, p.lon]).collect();
            let key = format!("{}-{}", block.to_lowercase().replace(' ', "-"), i + 1);
            ureq::put(&format!("{url}/api/v1/fields/{key}"))
                .header("Authorization", &format!("Bearer {token}"))
                .send_json(serde_json::json!({
                    "name": format!("{block} {}", i + 1),
                    "polygon": polygon,
                }))?;
        }
        Ok(())
    })
    .await;
    if !matches!(put, Ok(Ok(()))) {
        tracing::warn!("the demo's fields were not entered: {put:?}");
    }
}

/// A pilot token for the demo's station, made afresh each run (the one a previous run made
/// is revoked: its secret was only ever shown then).
fn demo_token(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use edge_daemon::tokens::{Role, TokenError, Tokens};
    let tokens = Tokens::open(data_dir)?;
    match tokens.revoke("demo") {
        Ok(_) | Err(TokenError::NoSuchToken(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(tokens.create("demo", Role::Pilot)?.1)
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `main` on a multi-threaded runtime. Blocking tasks still running when it returns
/// (a query for a client that went away) get a moment to finish, not an unbounded wait.
pub fn block_on<T>(
    main: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(main);
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}
