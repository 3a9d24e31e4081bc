//! `sim`: simulated copters over any endpoint.

use std::process::ExitCode;

use edge_daemon::link::Endpoint;
use edge_daemon::sim::SimConfig;

use super::parse_endpoint;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Number of vehicles (system ids first-sysid, first-sysid+1, ...).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=250))]
    vehicles: u8,
    /// Where the vehicles' radio is: e.g. udpout:127.0.0.1:14550 or serial:/dev/pts/5:57600.
    #[arg(long, value_parser = parse_endpoint)]
    link: Endpoint,
    /// Position and attitude rate, Hz.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// System id of the first vehicle.
    #[arg(long, default_value_t = 1)]
    first_sysid: u8,
    /// Stay on the ground until commanded, instead of flying surveys.
    #[arg(long)]
    idle: bool,
    /// Report positions, altitudes and velocities with GPS noise, as a real receiver gives
    /// them (about 0.4 m horizontally, 0.7 m vertically, 0.1 m/s), instead of exact tracks.
    #[arg(long)]
    gps_noise: bool,
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    if args.rate <= 0.0 || args.rate > 1000.0 {
        anyhow::bail!("--rate must be between 0 and 1000 Hz");
    }
    if u16::from(args.first_sysid) + u16::from(args.vehicles) > 256 {
        anyhow::bail!("system ids would pass 255");
    }
    let config = SimConfig {
        vehicles: args.vehicles,
        telemetry_hz: args.rate,
        first_sysid: args.first_sysid,
        auto_fly: !args.idle,
        gps_noise: args.gps_noise,
        ..SimConfig::new(args.link)
    };
    super::serve::block_on(async {
        let signals = trellis_web::lifecycle::StopSignals::install()?;
        tokio::select! {
            r = edge_daemon::sim::run(config) => r?,
            () = signals.stopping() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
