//! Relay configuration: TOML, every default in `Config::default`, documented in
//! `cloud-relay.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Database, CA and relay certificate live here.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub quic: QuicConfig,
    pub hq: HqConfig,
    pub cluster: ClusterConfig,
}

/// Several instances serving as one relay (with a shared PostgreSQL store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Empty: this instance is the whole relay. `nats://HOST:PORT`: the NATS server through
    /// which the instances share the live picture.
    pub nats: String,
    /// This instance's name among the others (logs, metrics); empty: host name and port.
    pub instance: String,
    /// The NATS subject the instances share: instances on one subject are one relay, so
    /// two relays may share a NATS server on two subjects.
    pub subject: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: String::new(),
            instance: String::new(),
            subject: "trellis.relay.v2.live".into(),
        }
    }
}

/// Where the relay keeps what it stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: SQLite in `data_dir`; `postgres://…`: a PostgreSQL database several relay
    /// instances may share.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HqConfig {
    /// Where HQ's browsers and tools connect (HTTPS).
    pub listen: SocketAddr,
    /// Serve HTTPS. Off only behind a TLS-terminating proxy, or on loopback (the demo).
    pub tls: bool,
    /// PEM certificate chain and key for HTTPS; empty: the relay's own certificate, issued
    /// by its CA for `quic.server_names` (clients then trust `ca.pem` from the data dir).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for HqConfig {
    fn default() -> Self {
        HqConfig {
            listen: ([0, 0, 0, 0], 8443).into(),
            tls: true,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Where edges connect.
    pub listen: SocketAddr,
    /// The address enrollment bundles tell edges to dial (HOST:PORT), or several, comma
    /// separated, for instances of one relay: edges move to the next when one fails.
    pub public_address: String,
    /// Names the relay's certificate is valid for; edges verify the one they dial.
    pub server_names: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("relay-data"),
            store: StoreConfig::default(),
            quic: QuicConfig::default(),
            hq: HqConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            listen: ([0, 0, 0, 0], 4433).into(),
            public_address: "localhost:4433".into(),
            server_names: vec!["localhost".into()],
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_file_documents_the_defaults() {
        let parsed: super::Config =
            toml::from_str(include_str!("../cloud-relay.example.toml")).unwrap();
        assert_eq!(parsed, super::Config::default());
    }
}
