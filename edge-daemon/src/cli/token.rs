//! `token create|list|revoke`: who may use the station's API and web UI. Works on the data
//! directory's token book, with the daemon running or not; the daemon notices within a
//! second.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use edge_daemon::tokens::{Role, TokenInfo, Tokens};

use super::ConfigArgs;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it, once: only its hash is kept.
    Create {
        /// Who or what holds it ("crew phones", "ana"): unique among active tokens.
        #[arg(long)]
        name: String,
        /// viewer (crews: see, never change), pilot (edit, acknowledge, command) or admin.
        #[arg(long)]
        role: Role,
        /// Also print a QR code of the signed-in web UI address for a phone to scan.
        #[arg(long)]
        qr: bool,
        /// The station's address as phones reach it, e.g. http://192.168.4.1:8080 (default:
        /// the API's listen address, or this machine's first non-loopback address).
        #[arg(long)]
        url: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Every token, revoked ones too (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a token by name or id; open sessions using it end within a second.
    Revoke {
        name_or_id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            qr,
            url,
            json,
            config,
        } => {
            let config = config.load()?;
            let (info, secret) = Tokens::open(&config.data_dir)?.create(&name, role)?;
            let base = url.unwrap_or_else(|| station_url(config.api.listen));
            let signed_in = format!("{}/#token={secret}", base.trim_end_matches('/'));
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "token": info, "secret": secret, "url": signed_in })
                );
            } else {
                println!("{secret}");
                eprintln!(
                    "token {} ({}, {}): shown once, only its hash is kept",
                    info.id, info.name, info.role
                );
                eprintln!("signed-in web UI: {signed_in}");
            }
            if qr {
                eprintln!("{}", qr_code(&signed_in)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { json, config } => {
            let tokens = Tokens::open(&config.load()?.data_dir)?.list()?;
            if json {
                println!("{}", serde_json::json!({ "tokens": tokens }));
            } else {
                print_list(&tokens);
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { name_or_id, config } => {
            let revoked = Tokens::open(&config.load()?.data_dir)?.revoke(&name_or_id)?;
            println!(
                "revoked {} ({}, {})",
                revoked.id, revoked.name, revoked.role
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_list(tokens: &[TokenInfo]) {
    println!(
        "{:<12}  {:<7}  {:<10}  {:<20}  NAME",
        "ID", "ROLE", "STATE", "CREATED"
    );
    for t in tokens {
        let created = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(t.created_unix_ms.max(0) as u64),
        );
        let state = if t.revoked_unix_ms.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "{:<12}  {:<7}  {:<10}  {:<20}  {}",
            t.id,
            t.role.as_str(),
            state,
            created.to_string(),
            t.name
        );
    }
}

/// The web UI's address as a phone on the station's network reaches it.
fn station_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .ok()
            .and_then(|addrs| {
                addrs
                    .into_iter()
                    .map(|a| a.ip())
                    .find(|ip| ip.is_ipv4() && !ip.is_loopback())
            })
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        listen.ip()
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// `text` as a QR code in the terminal, two rows of modules per line of text.
fn qr_code(text: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}
