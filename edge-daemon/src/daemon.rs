//! Starting and stopping the daemon: store → links → ingest loop → API, and the reverse.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::ingest::{self, Ingest};
use crate::link::{self, Links};
use crate::store::{Store, StoreStatus};
use crate::tokens::TokenBook;
use crate::vehicle::FleetSnapshot;
use crate::{clock, dialect};

/// Inbound batches queued between links and the ingest loop.
const INBOUND_QUEUE: usize = 1_024;

/// A running daemon.
pub struct Daemon {
    pub api_addr: SocketAddr,
    pub links: Links,
    pub snapshots: watch::Receiver<Arc<FleetSnapshot>>,
    store: Store,
    shutdown: watch::Sender<bool>,
    ingest: JoinHandle<()>,
    api: JoinHandle<()>,
    sync: Option<JoinHandle<()>>,
    alive: Arc<AtomicU64>,
}

/// How long the API may take to stop: its own grace for requests in flight, and a second
/// more before it is cut.
const API_GRACE: Duration = Duration::from_secs(1).saturating_add(trellis_web::serve::STOP_GRACE);

impl Daemon {
    pub async fn start(config: &Config) -> anyhow::Result<Daemon> {
        dialect::warm_up();
        // A bad certificate stops the start before anything runs.
        let tls = config.api_tls()?;
        let store = Store::open(&config.data_dir, config.store_config())?;
        let names: HashMap<u8, String> = store
            .reader()
            .vehicles()?
            .into_iter()
            .map(|v| (v.sysid, v.name))
            .collect();
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("API cannot listen on {}", config.api.listen))?;
        let api_addr = listener.local_addr()?;

        let links = Links::default();
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        for l in &config.links {
            link::spawn(l.clone(), &links, inbound_tx.clone());
        }
        drop(inbound_tx);

        let (snapshot_tx, snapshots) = watch::channel(Arc::new(FleetSnapshot::default()));
        let ingest = Ingest::new(
            links.clone(),
            config.link_lost_after(),
            names,
            &config.gcs,
            store.sender(),
            snapshot_tx,
        )
        .with_time(store.time_base())
        .with_low_battery_pct(config.vehicles.low_battery_pct)
        .with_geofences(store.reader());
        let alive = ingest.alive.clone();
        let live = ingest.live();
        let time = ingest.time();
        let relay_time = ingest.relay_time();
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Commands people send, stored already, to the ingest loop that owns the links. A
        // full queue makes the request wait; 64 is more than pilots click.
        let (commands, commands_rx) = mpsc::channel(64);
        let ingest = tokio::spawn(ingest::run(
            ingest,
            inbound_rx,
            commands_rx,
            shutdown_rx.clone(),
        ));

        let mut sync = None;
        let sync_status = match crate::sync::installed(&config.data_dir)? {
            Some(bundle) => {
                let status = Arc::new(crate::sync::SyncStatus {
                    enrolled_as: format!("{}/{}", bundle.org, bundle.edge),
                    relay: bundle.relay.clone(),
                    ..Default::default()
                });
                let client = crate::sync::Client {
                    bundle,
                    reader: store.reader(),
                    store: store.sender(),
                    committed: store.status(),
                    status: status.clone(),
                    snapshots: snapshots.clone(),
                    bandwidth_limit_bytes_per_s: config.sync.bandwidth_limit_bytes_per_s,
                    live_interval: Duration::from_millis(config.sync.live_interval_ms),
                    time: time.clone(),
                    relay_time,
                };
                sync = Some(tokio::spawn(crate::sync::run(client, shutdown_rx.clone())));
                status
            }
            None => Arc::new(crate::sync::SyncStatus::default()),
        };

        let tokens = TokenBook::watch(&config.data_dir)?;
        if tokens.is_empty() {
            tracing::warn!(
                "no API tokens yet: every route but health and metrics answers 401 until one \
                 is made (edge-daemon token create --name NAME --role viewer|pilot|admin)"
            );
        }
        let state = AppState {
            sync: sync_status,
            snapshots: snapshots.clone(),
            links: links.clone(),
            reader: store.reader(),
            store: store.sender(),
            store_status: store.status(),
            store_path: store.path().to_path_buf(),
            quota_bytes: config.store_config().quota_bytes,
            started: Instant::now(),
            time,
            live,
            tokens: tokens.clone(),
            stream: Arc::default(),
            basemap: basemap(&config.api.mbtiles),
            commands,
        };
        let app = api::router(state, api::auth::Auth::new(tokens));
        let mut api_shutdown = shutdown_rx;
        let listener = listener.into_std()?;
        let api = tokio::spawn(async move {
            let stop = async move {
                let _ = api_shutdown.changed().await;
            };
            if let Err(e) = trellis_web::serve::serve(listener, tls, app, stop).await {
                tracing::error!("API server failed: {e}");
            }
        });
        tracing::info!(api = %api_addr, https = !config.api.cert_file.as_os_str().is_empty(),
            data = %store.path().display(), links = config.links.len(), "edge daemon running");
        Ok(Daemon {
            api_addr,
            links,
            snapshots,
            store,
            shutdown,
            ingest,
            api,
            sync,
            alive,
        })
    }

    pub fn store_status(&self) -> Arc<StoreStatus> {
        self.store.status()
    }

    /// Stops ingest, the API and sync, commits what the store holds, and closes it. Each
    /// part stops on the shutdown signal and none waits on a peer for long, so this returns
    /// within a couple of seconds whatever the links, the relay or API clients are doing.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.ingest.await;
        if let Some(sync) = self.sync {
            let _ = sync.await;
        }
        let mut api = self.api;
        if tokio::time::timeout(API_GRACE, &mut api).await.is_err() {
            tracing::warn!("API requests still open after {API_GRACE:?}; closing them");
            api.abort();
        }
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("edge daemon stopped");
    }

    /// Tells systemd we are ready, and feeds its watchdog only while the ingest loop and the
    /// store writer are both making progress: a wedged daemon gets restarted.
    pub fn notify_systemd(&self) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let Some(interval) = trellis_web::lifecycle::watchdog_interval() else {
            return;
        };
        let period = interval / 2;
        let alive = self.alive.clone();
        let store = self.store.status();
        tokio::spawn(async move {
            let mut last = (u64::MAX, 0i64);
            loop {
                tokio::time::sleep(period).await;
                let now = (alive.load(Relaxed), store.writer_heartbeat_ms.load(Relaxed));
                let writer_fresh = clock::monotonic_ms() - now.1 < 30_000;
                if now.0 != last.0 && writer_fresh {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::error!("ingest or store writer stalled; withholding watchdog");
                }
                last = now;
            }
        });
    }
}

/// The offline basemap, if one is configured and usable; a bad file is reported and the UI
/// falls back to its grid (a station must not refuse to start over a map).
fn basemap(mbtiles: &std::path::Path) -> Option<api::tiles::Basemap> {
    if mbtiles.as_os_str().is_empty() {
        return None;
    }
    match api::tiles::Basemap::open(mbtiles) {
        Ok(b) => {
            tracing::info!(file = %mbtiles.display(), min_zoom = b.min_zoom, max_zoom = b.max_zoom, "offline basemap");
            Some(b)
        }
        Err(e) => {
            tracing::error!("offline basemap not used: {e}");
            None
        }
    }
}
