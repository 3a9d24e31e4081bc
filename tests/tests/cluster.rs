//! Two relay instances on one PostgreSQL database and one NATS subject serve as one relay:
//! HQ on either sees every station's vehicles live, edits reach stations on the other, and a
//! station whose instance is killed mid-stream moves to the other and stays exactly once,
//! whether it dials the next address itself or a load balancer sends it there; and NATS,
//! which carries only the live picture, may be down at start or go away and come back.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

struct Site {
    edge: EdgeDaemon,
    udp: u16,
}

/// A station enrolled through `relay` (so it dials that instance first), running.
fn site(relay: &CloudRelay, name: &str) -> Site {
    let data = tempfile::tempdir().unwrap();
    relay.enroll("vineyard-co", name, data.path());
    let udp = free_udp_port();
    let edge = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    Site { edge, udp }
}

/// A pymavlink vehicle flying north at 5 m/s until killed.
fn vehicle(sysid: u8, udp: u16) -> Proc {
    Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", &format!("udpout:127.0.0.1:{udp}")])
            .args(["--sysid", &sysid.to_string()])
            .args(["--uid", &format!("00cc00cc00cc00{sysid:02x}")])
            .args(["--lat", "38.29", "--lon", "-122.455"])
            .args(["--rate", "50", "--speed", "5", "--battery", "80"])
            .args(["--positions", "1000000"])
            .stdout(Stdio::piped()),
    )
}

/// The vehicles HQ shows live on `relay`, by name.
fn live_names(relay: &CloudRelay, token: &str) -> Option<Vec<String>> {
    let (_, body) = relay.hq_get(token, "/api/v1/orgs/vineyard-co/vehicles");
    let mut names: Vec<String> = body["vehicles"]
        .as_array()?
        .iter()
        .filter(|v| v["state"].is_object())
        .filter_map(|v| Some(v["name"].as_str()?.to_string()))
        .collect();
    names.sort();
    Some(names)
}

fn connected(relay: &CloudRelay, token: &str, edge: &str) -> bool {
    let (_, body) = relay.hq_get(token, "/api/v1/orgs/vineyard-co/edges");
    body["edges"].as_array().is_some_and(|edges| {
        edges
            .iter()
            .any(|e| e["edge"] == edge && e["connected"] == true)
    })
}

fn stream(relay: &CloudRelay, token: &str) -> Proc {
    let url = format!(
        "wss://127.0.0.1:{}/api/v1/orgs/vineyard-co/stream",
        relay.hq_port
    );
    let mut p = Proc::spawn(
        "HQ stream client",
        python("stream_client.py")
            .args(["--url", &url, "--token", token])
            .arg("--ca")
            .arg(relay.ca_pem())
            .stdout(Stdio::piped()),
    );
    p.wait_line(T, |l| l.contains("\"open\""));
    p
}

/// Waits for a `vehicle` message about `name` on an HQ stream; its state's age when read.
fn heard_live(ws: &mut Proc, name: &str) -> Duration {
    let line = ws.wait_line(T, |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|m| m["type"] == "vehicle" && m["entity"]["name"] == name)
    });
    let message: Value = serde_json::from_str(&line).expect("stream JSON");
    let entity = &message["entity"];
    let t_us = entity["state"]["t_us"]
        .as_i64()
        .expect("a state with its time");
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    Duration::from_micros((now_us - t_us).max(0) as u64)
}

/// A counter from the relay's `/metrics`, by its name and labels as printed.
fn relay_metric(relay: &CloudRelay, series: &str) -> u64 {
    metric(&relay.metrics(), series).unwrap_or_else(|| panic!("{series} is not on /metrics")) as u64
}

/// Waits until the relay holds exactly the station's outbox, and compares row for row.
fn assert_exactly_once(relay: &CloudRelay, site: &Site, name: &str) -> usize {
    let (outbox, held) = wait_for(
        &format!("the relay to hold exactly {name}'s outbox"),
        Duration::from_secs(120),
        || {
            let outbox = edge_rows(&site.edge.db());
            let held = relay.rows("vineyard-co", name);
            let acked = site.edge.try_get("/api/v1/sync")?["relay_acked"].as_u64()?;
            let newest = outbox.last()?[0] as u64;
            (held.len() == outbox.len() && acked == newest).then_some((outbox, held))
        },
    );
    assert!(
        held == outbox,
        "rows at the relay differ from {name}'s outbox"
    );
    held.len()
}

/// Two instances of one relay on the shared NATS server, started, with the org made.
fn running_pair() -> (CloudRelay, CloudRelay) {
    start_pair(CloudRelay::cluster(2))
}

/// Starts two instances of one relay, with the org made (through A: the store is shared).
fn start_pair(mut instances: Vec<CloudRelay>) -> (CloudRelay, CloudRelay) {
    let mut b = instances.pop().unwrap();
    let mut a = instances.pop().unwrap();
    a.admin(&["org", "create", "vineyard-co"]);
    for relay in [&mut a, &mut b] {
        relay.start();
        relay.wait_hq();
    }
    (a, b)
}

#[test]
fn two_instances_serve_as_one_relay_and_a_station_survives_the_loss_of_its_instance() {
    let (mut a, mut b) = running_pair();
    let viewer = a.token("vineyard-co", "viewer");
    let operator = a.token("vineyard-co", "operator");

    // pi-north syncs through A, pi-south through B; each has a vehicle flying, and pi-north
    // a simulated fleet besides, so batches are in flight when A dies.
    let north = site(&a, "pi-north");
    let south = site(&b, "pi-south");
    // (The simulated fleet flies system ids 1 to 5.)
    let mut v1 = vehicle(21, north.udp);
    let mut v2 = vehicle(22, south.udp);
    let mut load = sim_fleet(north.udp, 5, 20);
    wait_for("each station connected to its own instance", T, || {
        (connected(&a, &viewer, "pi-north") && connected(&b, &viewer, "pi-south")).then_some(())
    });

    // HQ on A sees the vehicle whose station is on B, live, and B's station as connected.
    let mut on_a = stream(&a, &viewer);
    let age = heard_live(&mut on_a, "V-22");
    assert!(
        age < Duration::from_secs(3),
        "V-22 (station on B) reached A's HQ stream {age:?} after it was sampled"
    );
    wait_for("both vehicles live at A's HQ", T, || {
        let names = live_names(&a, &viewer)?;
        (names.contains(&"V-21".into()) && names.contains(&"V-22".into())).then_some(())
    });
    assert!(connected(&a, &viewer, "pi-south"), "A lists B's station");
    assert!(connected(&b, &viewer, "pi-north"), "B lists A's station");

    // An edit made at A's HQ reaches the station on B.
    let (status, reply) = a.hq_send(
        "PUT",
        &operator,
        "/api/v1/orgs/vineyard-co/fields/block-7",
        &json!({ "name": "Block 7 (HQ on A)" }),
    );
    assert_eq!(status, 200, "{reply}");
    wait_for("the field at pi-south, synced through B", T, || {
        let fields = south.edge.try_get("/api/v1/fields")?;
        fields
            .to_string()
            .contains("Block 7 (HQ on A)")
            .then_some(())
    });

    // A dies under load; pi-north moves to B.
    let before = a.rows("vineyard-co", "pi-north").len();
    assert!(before > 0, "pi-north had synced through A");
    let connects = north.edge.get("/api/v1/sync")["connects"]
        .as_u64()
        .unwrap_or(0);
    a.kill9();
    let killed = Instant::now();
    wait_for("pi-north reconnected, to B", T, || {
        let sync = north.edge.try_get("/api/v1/sync")?;
        (sync["connects"].as_u64()? > connects && sync["connected"] == true).then_some(())
    });
    eprintln!("pi-north on B {:?} after A was killed", killed.elapsed());
    let mut on_b = stream(&b, &viewer);
    heard_live(&mut on_b, "V-21");
    heard_live(&mut on_b, "V-22");
    wait_for("both vehicles live at B's HQ", T, || {
        let names = live_names(&b, &viewer)?;
        (names.contains(&"V-21".into()) && names.contains(&"V-22".into())).then_some(())
    });
    wait_for("pi-north's rows growing through B", T, || {
        (a.rows("vineyard-co", "pi-north").len() > before + 500).then_some(())
    });

    // Traffic stops: every row of both stations is at the relay exactly once.
    load.kill9();
    v1.kill9();
    v2.kill9();
    assert!(assert_exactly_once(&a, &north, "pi-north") > before);
    assert!(assert_exactly_once(&a, &south, "pi-south") > 0);
    assert!(
        relay_metric(
            &b,
            r#"trellis_relay_peer_messages_total{outcome="received"}"#
        ) > 0
    );
    assert_eq!(
        relay_metric(
            &b,
            r#"trellis_relay_peer_messages_total{outcome="malformed"}"#
        ),
        0
    );
    assert!(relay_metric(&b, "trellis_relay_group_commits_total") > 0);
    assert_eq!(
        relay_metric(&b, "trellis_relay_compaction_failures_total"),
        0
    );

    // A revocation made anywhere reaches the instance holding the session.
    a.admin(&[
        "edge",
        "revoke",
        "--org",
        "vineyard-co",
        "--edge",
        "pi-south",
    ]);
    wait_for("pi-south cut off by B", Duration::from_secs(10), || {
        (!connected(&b, &viewer, "pi-south")).then_some(())
    });
    b.stop();
}

/// A UDP load balancer in front of the instances, as a cloud provider's would be: the
/// station knows only its address, and every datagram goes to the instance it points at now.
struct Balancer {
    addr: std::net::SocketAddr,
    backend: std::sync::Arc<std::sync::Mutex<std::net::SocketAddr>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Balancer {
    fn start(backend: std::net::SocketAddr) -> Balancer {
        use std::net::UdpSocket;
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        use std::sync::{Arc, Mutex};
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let backend = Arc::new(Mutex::new(backend));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::default();
        {
            let (front, back, backend, client, stop) = (
                front.clone(),
                back.clone(),
                backend.clone(),
                client.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        let to = *backend.lock().unwrap();
                        let _ = back.send_to(&buf[..n], to);
                    }
                }
            });
        }
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Relaxed) {
                    if let Ok((n, _)) = back.recv_from(&mut buf) {
                        if let Some(to) = *client.lock().unwrap() {
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                }
            });
        }
        Balancer {
            addr,
            backend,
            stop,
        }
    }

    fn point_at(&self, backend: std::net::SocketAddr) {
        *self.backend.lock().unwrap() = backend;
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Behind one load-balanced address, a station whose instance dies is reset by the
/// instance its datagrams reach next (the instances share `reset.key`), and reconnects at
/// once instead of after QUIC's 20 s idle timeout.
#[test]
fn behind_a_load_balancer_the_surviving_instance_resets_the_station_at_once() {
    let (mut a, b) = running_pair();
    let viewer = a.token("vineyard-co", "viewer");
    let at = |relay: &CloudRelay| std::net::SocketAddr::from(([127, 0, 0, 1], relay.port));
    let balancer = Balancer::start(at(&a));

    // The station's bundle names the balancer only.
    let data = tempfile::tempdir().unwrap();
    a.enroll("vineyard-co", "pi-lb", data.path());
    let bundle = data.path().join("sync").join("bundle.toml");
    let text = std::fs::read_to_string(&bundle).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.starts_with("relay =") {
            true => format!("relay = \"{}\"\n", balancer.addr),
            false => format!("{l}\n"),
        })
        .collect();
    assert!(text.contains(&balancer.addr.to_string()), "{text}");
    std::fs::write(&bundle, text).unwrap();
    let udp = free_udp_port();
    let edge = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    let site = Site { edge, udp };
    let mut load = sim_fleet(site.udp, 5, 20);
    wait_for(
        "the station connected through the balancer, to A",
        T,
        || connected(&a, &viewer, "pi-lb").then_some(()),
    );
    wait_for("rows through A", T, || {
        (a.rows("vineyard-co", "pi-lb").len() > 200).then_some(())
    });
    let connects = site.edge.get("/api/v1/sync")["connects"]
        .as_u64()
        .unwrap_or(0);

    a.kill9();
    balancer.point_at(at(&b));
    let killed = Instant::now();
    wait_for("the station reconnected, to B", T, || {
        let sync = site.edge.try_get("/api/v1/sync")?;
        (sync["connects"].as_u64()? > connects && sync["connected"] == true).then_some(())
    });
    let moved = killed.elapsed();
    eprintln!("pi-lb on B {moved:?} after A was killed");
    assert!(
        moved < Duration::from_secs(12),
        "the station took {moved:?} to reach B: no stateless reset, it waited out the idle timeout"
    );
    // (Rows are read through A's handle on the shared database: B holds none of its own.)
    let before = a.rows("vineyard-co", "pi-lb").len();
    wait_for("rows growing through B", T, || {
        (a.rows("vineyard-co", "pi-lb").len() > before + 200).then_some(())
    });
    load.kill9();
    assert!(assert_exactly_once(&a, &site, "pi-lb") > before);
}

/// Whether HQ on `relay` shows `name` with a state sampled under 3 s ago.
fn fresh(relay: &CloudRelay, token: &str, name: &str) -> Option<()> {
    let (_, body) = relay.hq_get(token, "/api/v1/orgs/vineyard-co/vehicles");
    let vehicle = body["vehicles"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?
        .clone();
    let t_us = vehicle["state"]["t_us"].as_i64()?;
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_micros() as i64;
    (now_us - t_us < 3_000_000).then_some(())
}

fn acked(site: &Site) -> u64 {
    site.edge.get("/api/v1/sync")["relay_acked"]
        .as_u64()
        .unwrap_or(0)
}

/// NATS carries only the live picture, so it may be down: instances start and serve their
/// stations without it, join each other's picture when it comes up, and ride out its loss
/// and return without a restart.
#[test]
fn the_instances_serve_without_nats_and_join_up_when_it_returns() {
    let mut nats = NatsServer::new();
    let (a, b) = start_pair(CloudRelay::cluster_on(2, &nats.url()));
    let viewer = a.token("vineyard-co", "viewer");
    let north = site(&a, "pi-north");
    let south = site(&b, "pi-south");
    let _v1 = vehicle(21, north.udp);
    let _v2 = vehicle(22, south.udp);

    // NATS has not started: each instance serves its own station and knows only it.
    wait_for("both stations syncing with NATS down", T, || {
        (acked(&north) > 0 && acked(&south) > 0).then_some(())
    });
    wait_for("each instance listing its own station", T, || {
        (connected(&a, &viewer, "pi-north") && connected(&b, &viewer, "pi-south")).then_some(())
    });
    assert!(
        !connected(&a, &viewer, "pi-south"),
        "A listed B's station with no NATS to hear of it"
    );

    // NATS comes up: A hears of B's station and its vehicle, live.
    nats.start();
    let up = Instant::now();
    wait_for("V-22 (on B) live at A's HQ once NATS is up", T, || {
        fresh(&a, &viewer, "V-22")
    });
    wait_for("A listing B's station", T, || {
        connected(&a, &viewer, "pi-south").then_some(())
    });
    eprintln!("joined up {:?} after NATS started", up.elapsed());

    // NATS dies: B's sessions expire from A's picture, and both stations sync on.
    nats.kill9();
    let (north_before, south_before) = (acked(&north), acked(&south));
    wait_for("A to stop listing B's station without NATS", T, || {
        (!connected(&a, &viewer, "pi-south")).then_some(())
    });
    wait_for("both stations syncing on without NATS", T, || {
        (acked(&north) > north_before && acked(&south) > south_before).then_some(())
    });

    // NATS is back: no instance restarted, and A's picture has B's again.
    nats.start();
    let back = Instant::now();
    wait_for("A listing B's station again", T, || {
        connected(&a, &viewer, "pi-south").then_some(())
    });
    wait_for("V-22 live at A's HQ again", T, || {
        fresh(&a, &viewer, "V-22")
    });
    eprintln!("joined up again {:?} after NATS restarted", back.elapsed());
    assert!(
        relay_metric(
            &a,
            "trellis_relay_peer_messages_total{outcome=\"received\"}"
        ) > 0,
        "A counted what B sent it"
    );
}
