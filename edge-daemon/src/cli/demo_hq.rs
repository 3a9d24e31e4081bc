//! The demo's HQ: a cloud relay on loopback in this process, with the demo org, each
//! station enrolled into it, and a viewer token. Only in a build with the `demo-relay`
//! feature (the default); the lean station a Pi runs leaves the relay out, and its demo runs
//! the stations alone.

use std::net::SocketAddr;
use std::path::Path;

#[cfg(feature = "demo-relay")]
pub use with_relay::DemoHq;
#[cfg(not(feature = "demo-relay"))]
pub use without_relay::DemoHq;

#[cfg(feature = "demo-relay")]
mod with_relay {
    use super::*;
    use cloud_relay::store::StoreError;

    const DEMO_ORG: &str = "demo";

    pub struct DemoHq {
        relay: cloud_relay::relay::Relay,
        token: String,
    }

    impl DemoHq {
        /// Starts the relay in `relay_dir` and enrolls each station (its bundle installed
        /// in its data directory, so it syncs from its first start).
        pub async fn start(
            relay_dir: &Path,
            stations: &[(&str, &Path)],
            hq_listen: SocketAddr,
        ) -> anyhow::Result<DemoHq> {
            let mut config = cloud_relay::config::Config {
                data_dir: relay_dir.to_path_buf(),
                ..Default::default()
            };
            config.quic.listen = ([127, 0, 0, 1], 0).into();
            config.quic.server_names = vec!["localhost".into(), "127.0.0.1".into()];
            config.hq.listen = hq_listen;
            config.hq.tls = false;
            std::fs::create_dir_all(&config.data_dir)?;
            let store: std::sync::Arc<dyn cloud_relay::store::Store> =
                std::sync::Arc::new(cloud_relay::store::SqliteStore::open(
                    &config.data_dir.join(cloud_relay::relay::DB_FILE),
                )?);
            match store.create_org(DEMO_ORG) {
                Ok(()) | Err(StoreError::OrgExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let relay = cloud_relay::relay::Relay::start(&config, store.clone()).await?;
            config.quic.public_address = relay.quic_addr.to_string();
            for (edge, data_dir) in stations {
                std::fs::create_dir_all(data_dir)?;
                let bundle = cloud_relay::relay::enroll(&config, store.as_ref(), DEMO_ORG, edge)?;
                let file = config.data_dir.join(format!("{edge}.bundle.toml"));
                {
                    use std::io::Write as _;
                    use std::os::unix::fs::OpenOptionsExt as _;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&file)?
                        .write_all(bundle.to_toml().as_bytes())?;
                }
                edge_daemon::sync::enroll(&file, data_dir)?;
            }
            let token =
                store.create_token(DEMO_ORG, cloud_relay::store::hq::Role::Viewer, "demo")?;
            Ok(DemoHq { relay, token })
        }

        /// What the demo prints about HQ.
        pub fn describe(&self) -> Vec<String> {
            let (addr, token) = (self.relay.hq_addr, &self.token);
            vec![
                format!("HQ (relay):     http://{addr}/#token={token}"),
                format!(
                    "HQ API:         curl -H 'Authorization: Bearer {token}' http://{addr}/api/v1/orgs/{DEMO_ORG}/vehicles"
                ),
            ]
        }

        pub async fn stop(self) {
            self.relay.stop().await;
        }
    }
}

#[cfg(not(feature = "demo-relay"))]
mod without_relay {
    use super::*;

    /// No relay in this build: the stations run alone, not enrolled anywhere.
    pub struct DemoHq;

    impl DemoHq {
        pub async fn start(
            _relay_dir: &Path,
            _stations: &[(&str, &Path)],
            _hq_listen: SocketAddr,
        ) -> anyhow::Result<DemoHq> {
            Ok(DemoHq)
        }

        pub fn describe(&self) -> Vec<String> {
            vec![
                "HQ:             not in this build (the lean station, built without the \
                 `demo-relay` feature); the default build runs a relay for HQ here"
                    .into(),
            ]
        }

        pub async fn stop(self) {}
    }
}
