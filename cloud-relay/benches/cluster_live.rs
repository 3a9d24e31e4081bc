//! `cluster_live`: what a second relay instance adds to the live picture's latency, the hop
//! from the instance a station is connected to, over NATS, to another instance's HQ streams.
//!
//! Two `LiveView`s joined by `cloud_relay::cluster::Cluster` on the local NATS server
//! (`BENCH_NATS`, default `nats://127.0.0.1:4222`; a subject of the bench's own), in this
//! process, as two `cloud-relay serve` processes would hold them. Instance A is loaded as at
//! 1,000 stations of 5 vehicles each reporting once a second (5,000 vehicle states a second,
//! `CLUSTER_LIVE_STATES`), and every 10 ms it observes one more state of a probe vehicle. The
//! figure is the time from A's `observe` to the moment B's update broadcast (what its HQ
//! WebSocket streams and downsync listen to) carries that probe state.
//!
//! Not in the figure: the station → relay datagram before it and the HQ WebSocket after it,
//! both the same with one instance (`live_latency` measures the station's; the relay's HQ
//! stream is the same broadcast). `CLUSTER_LIVE_SECS` (default 20).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_relay::cluster::Cluster;
use cloud_relay::live::{LiveView, Sighting, State, Update};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn state(t_us: i64) -> State {
    State {
        t_us,
        lat: 38.29,
        lon: -122.45,
        alt_msl_m: 120.0,
        heading_deg: Some(90.0),
        battery_pct: Some(80),
        armed: true,
        mode: Some("AUTO".into()),
        custom_mode: 3,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let secs: u64 = env_or("CLUSTER_LIVE_SECS", 20);
    let per_second: u64 = env_or("CLUSTER_LIVE_STATES", 5_000);
    let nats = std::env::var("BENCH_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let subject = format!("trellis.bench.live.{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (a, b) = (Arc::new(LiveView::default()), Arc::new(LiveView::default()));
        let _a = Cluster::join(&nats, &subject, "bench-a", a.clone())
            .await
            .expect("join as A (is NATS running?)");
        let _b = Cluster::join(&nats, &subject, "bench-b", b.clone())
            .await
            .expect("join as B");
        let probe = Sighting {
            org: "bench".into(),
            edge: "probe".into(),
            sysid: 1,
        };
        let mut updates = b.subscribe();
        let running = Arc::new(AtomicBool::new(true));

        // The load: every vehicle of 1,000 stations, once a second, spread over the second.
        let load = {
            let (a, running) = (a.clone(), running.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let per_tick = per_second / 100;
                let mut t_us = 1_i64;
                while running.load(Relaxed) {
                    tick.tick().await;
                    for i in 0..per_tick {
                        let sighting = Sighting {
                            org: "bench".into(),
                            edge: format!("edge-{}", i % 1_000),
                            sysid: (t_us as u32 % 5) + 1,
                        };
                        a.observe(sighting, state(t_us));
                        t_us += 1;
                    }
                }
            })
        };

        // The probe: its states numbered by t_us, sent every 10 ms.
        let sent: Arc<std::sync::Mutex<HashMap<i64, Instant>>> = Default::default();
        let probing = {
            let (a, running, sent, probe) = (a.clone(), running.clone(), sent.clone(), probe.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut t_us = 1_i64;
                while running.load(Relaxed) {
                    tick.tick().await;
                    sent.lock().expect("probe times").insert(t_us, Instant::now());
                    a.observe(probe.clone(), state(t_us));
                    t_us += 1;
                }
            })
        };

        let warmup = Instant::now() + Duration::from_secs(2);
        let end = Instant::now() + Duration::from_secs(secs + 2);
        let (mut latencies_ms, mut lagged) = (Vec::new(), 0u64);
        while Instant::now() < end {
            match tokio::time::timeout(Duration::from_secs(5), updates.recv()).await {
                Ok(Ok(update)) => {
                    if let Update::State(s, st) = update.as_ref() {
                        if *s == probe {
                            let at = sent.lock().expect("probe times").remove(&st.t_us);
                            if let Some(at) = at.filter(|_| Instant::now() > warmup) {
                                latencies_ms.push(at.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => lagged += n,
                Ok(Err(e)) => panic!("B's updates ended: {e}"),
                Err(_) => panic!("no update reached B in 5 s: is NATS running at {nats}?"),
            }
        }
        running.store(false, Relaxed);
        let _ = tokio::join!(load, probing);
        let lost = sent.lock().expect("probe times").len();
        latencies_ms.sort_by(f64::total_cmp);
        assert!(latencies_ms.len() > 100, "too few probes arrived: {}", latencies_ms.len());
        let metrics = |live: &LiveView| {
            let m = &live.metrics;
            (
                m.peer_messages_sent.load(Relaxed),
                m.peer_messages_received.load(Relaxed),
                m.peer_messages_dropped.load(Relaxed),
            )
        };
        let (sent_a, _, dropped_a) = metrics(&a);
        let (_, received_b, _) = metrics(&b);
        println!(
            "{per_second} states/s at A for {secs} s: {sent_a} sent over NATS, {received_b} received at B, {dropped_a} dropped; B's broadcast lagged {lagged}"
        );
        println!(
            "probe A observe → B broadcast over {} probes ({lost} not seen, superseded or lagged): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latencies_ms.len(),
            percentile(&latencies_ms, 0.5),
            percentile(&latencies_ms, 0.9),
            percentile(&latencies_ms, 0.99),
            latencies_ms.last().copied().unwrap_or(0.0)
        );
        println!(
            "FIGURE cluster_live_p99 {:.2} ms",
            percentile(&latencies_ms, 0.99)
        );
    });
}
