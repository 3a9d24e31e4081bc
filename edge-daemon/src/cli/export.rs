//! `export tlog`: read straight from the database (works with the daemon stopped or running).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use edge_daemon::store::tlog::{self, TlogQuery};
use edge_daemon::store::{Reader, DB_FILE};

use super::ConfigArgs;

#[derive(clap::Subcommand)]
pub enum ExportCommand {
    /// Frames as a .tlog file (MAVExplorer, QGroundControl, pymavlink read it).
    Tlog(TlogArgs),
}

#[derive(clap::Args)]
pub struct TlogArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// System id of the vehicle; all systems when omitted.
    #[arg(long)]
    vehicle: Option<u8>,
    /// Start, RFC 3339 or Unix milliseconds.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive), RFC 3339 or Unix milliseconds.
    #[arg(long)]
    to: Option<String>,
    /// Output file.
    #[arg(long, short = 'o')]
    output: PathBuf,
}

pub fn run(cmd: ExportCommand) -> anyhow::Result<ExitCode> {
    let ExportCommand::Tlog(args) = cmd;
    let config = args.config.load()?;
    let db = config.data_dir.join(DB_FILE);
    if !db.exists() {
        anyhow::bail!("no database at {}", db.display());
    }
    let time = |flag: &str, s: &Option<String>, default: i64| -> anyhow::Result<i64> {
        match s {
            Some(s) => {
                trellis_web::time::parse_time_us(flag, s).map_err(|e| anyhow::anyhow!(e.message))
            }
            None => Ok(default),
        }
    };
    let q = TlogQuery {
        vehicle: args.vehicle,
        from_us: time("--from", &args.from, 0)?,
        to_us: time("--to", &args.to, i64::MAX)?,
    };
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let n = tlog::export(&Reader::new(db), &q, &mut out)?;
    eprintln!("wrote {n} frames to {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
