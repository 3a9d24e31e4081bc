//! Peers that break the protocol, over real QUIC with real certificates: each loses its own
//! connection and nothing else. An honest edge's session carries on beside them, the relay
//! keeps serving, and an edge's certificate decides who it writes as, whatever it sends.
//! The relay's session runs in this process, on SQLite or (`TRELLIS_RELAY_STORE=postgres`)
//! on a database of its own on the local PostgreSQL server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use sync_protocol::stream::Stream;

use cloud_relay::store::{EdgeStatus, PgStore, RelayStore, SqliteStore};
use prost::Message as _;
use sync_protocol::codec::{self, TelemetryRow};
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::pki::Ca;
use sync_protocol::proto::{envelope::Body, Batch, Encoding, Envelope, Hello, StreamState};
use sync_protocol::wire::{read_message, write_message};

struct Relay {
    addr: SocketAddr,
    ca: Ca,
    store: Arc<dyn RelayStore>,
    _dir: tempfile::TempDir,
    pg: Option<trellis_tests::PgDatabase>,
}

async fn relay() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let (store, pg) = blocking(|| {
        let (store, pg): (Arc<dyn RelayStore>, _) = if trellis_tests::relay_on_postgres() {
            let db = trellis_tests::PgDatabase::create();
            (Arc::new(PgStore::open(&db.url).unwrap()), Some(db))
        } else {
            let store = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
            (Arc::new(store), None)
        };
        for org in ["vineyard-co", "orchard-co"] {
            store.create_org(org).unwrap();
        }
        for (org, edge) in [
            ("vineyard-co", "honest"),
            ("vineyard-co", "rogue"),
            ("orchard-co", "pi"),
        ] {
            store
                .enroll_edge(&EdgeIdentity::new(org, edge).unwrap())
                .unwrap();
        }
        (store, pg)
    });
    let (ca, _) = Ca::generate("test CA").unwrap();
    let cert = ca.issue_relay(&["localhost".into()]).unwrap();
    let server = sync_protocol::transport::server_config(
        cert.cert_der().unwrap(),
        cert.key_der().unwrap(),
        ca.cert_der().unwrap(),
    )
    .unwrap();
    let endpoint =
        sync_protocol::transport::server_endpoint(server, "127.0.0.1:0".parse().unwrap(), &[1; 32])
            .unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(cloud_relay::server::run(
        endpoint,
        store.clone(),
        Default::default(),
    ));
    Relay {
        addr,
        ca,
        store,
        _dir: dir,
        pg,
    }
}

/// Runs `f` on a thread of its own: PostgreSQL's client runs a runtime of its own, which
/// tokio forbids on (or inside `block_in_place` on) a runtime's thread.
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("store call"))
}

impl Drop for Relay {
    fn drop(&mut self) {
        let pg = self.pg.take();
        blocking(move || drop(pg));
    }
}

async fn connect(relay: &Relay, org: &str, edge: &str) -> quinn::Connection {
    let key = relay
        .ca
        .issue_edge(&EdgeIdentity::new(org, edge).unwrap())
        .unwrap();
    let config = sync_protocol::transport::client_config(
        key.cert_der().unwrap(),
        key.key_der().unwrap(),
        relay.ca.cert_der().unwrap(),
    )
    .unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
        .connect(relay.addr, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// An honest session's control stream and its one telemetry lane.
struct Session {
    control: (quinn::SendStream, quinn::RecvStream),
    lane: quinn::SendStream,
}

/// Hello and Welcome, and the telemetry lane, as an edge holding nothing yet.
async fn session(conn: &quinn::Connection) -> Session {
    let control = hello(conn).await;
    let lane = conn.open_uni().await.unwrap();
    Session { control, lane }
}

/// Hello and Welcome, as an edge holding nothing yet.
async fn hello(conn: &quinn::Connection) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut tx, mut rx) = conn.open_bi().await.unwrap();
    let hello = Envelope {
        body: Some(Body::Hello(Hello {
            protocol_version: 1,
            software: "test".into(),
            streams: vec![StreamState {
                stream: Stream::Telemetry.name().into(),
                ..Default::default()
            }],
        })),
    };
    write_message(&mut tx, &hello).await.unwrap();
    match read_message(&mut rx).await.unwrap() {
        Some(Envelope {
            body: Some(Body::Welcome(_)),
        }) => (tx, rx),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

fn rows(range: std::ops::RangeInclusive<u64>) -> Vec<TelemetryRow> {
    range
        .map(|seq| TelemetryRow {
            seq,
            vehicle: 1,
            t_us: seq as i64 * 100_000,
            lat_e7: 382_900_000 + seq as i32,
            ..Default::default()
        })
        .collect()
}

fn batch(first: u64, last: u64, payload: Vec<u8>, n: u32) -> Envelope {
    Envelope {
        body: Some(Body::Batch(Batch {
            stream: Stream::Telemetry.name().into(),
            first_seq: first,
            last_seq: last,
            rows: n,
            encoding: Encoding::TelemetryColumnarV1 as i32,
            payload,
        })),
    }
}

/// Sends rows `first..=last` on the session's lane and waits for their Ack.
async fn send_and_ack(session: &mut Session, first: u64, last: u64) {
    let payload = codec::encode(&rows(first..=last), 3).unwrap();
    let n = (last - first + 1) as u32;
    write_message(&mut session.lane, &batch(first, last, payload, n))
        .await
        .unwrap();
    let ack = read_message(&mut session.control.1);
    match tokio::time::timeout(Duration::from_secs(10), ack).await {
        Ok(Ok(Some(Envelope {
            body: Some(Body::Ack(ack)),
        }))) => assert_eq!(ack.seq, last),
        other => panic!("expected Ack {last}, got {other:?}"),
    }
}

/// The connection ends, closed by the relay, within a bound.
async fn closed_by_relay(conn: &quinn::Connection, what: &str) {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(
                close.error_code,
                cloud_relay::server::CLOSE_PROTOCOL.into(),
                "{what}"
            )
        }
        Ok(other) => panic!("{what}: closed otherwise: {other}"),
        Err(_) => panic!("{what}: the relay kept the connection open"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_loses_its_own_connection_and_nothing_else() {
    let relay = relay().await;
    let honest = connect(&relay, "vineyard-co", "honest").await;
    let mut honest_session = session(&honest).await;
    send_and_ack(&mut honest_session, 1, 10).await;

    // 1. Bytes that are not a message where Hello belongs.
    let c = connect(&relay, "vineyard-co", "rogue").await;
    let (mut tx, _rx) = c.open_bi().await.unwrap();
    tx.write_all(&[0xff; 64]).await.unwrap();
    closed_by_relay(&c, "garbage instead of Hello").await;

    // 2. A length prefix far over the limit: refused before anything is allocated.
    let c = connect(&relay, "vineyard-co", "rogue").await;
    let (mut tx, _rx) = c.open_bi().await.unwrap();
    tx.write_all(&[0xff, 0xff, 0xff, 0xff, 0x0f]).await.unwrap();
    closed_by_relay(&c, "a 4 GiB length prefix").await;

    // 3. A telemetry payload with one bit flipped (the CRC catches it).
    let c = connect(&relay, "vineyard-co", "rogue").await;
    let _control = hello(&c).await;
    let mut payload = codec::encode(&rows(1..=5), 3).unwrap();
    let mid = payload.len() / 2;
    payload[mid] ^= 0x10;
    let mut lane = c.open_uni().await.unwrap();
    write_message(&mut lane, &batch(1, 5, payload, 5))
        .await
        .unwrap();
    closed_by_relay(&c, "a corrupt payload").await;

    // 4. A batch whose header and rows disagree, one that skips ahead (a gap), and one on a
    //    stream the relay does not know.
    for (what, message) in [
        (
            "a row count that lies",
            batch(1, 5, codec::encode(&rows(1..=5), 3).unwrap(), 9),
        ),
        (
            "a gap",
            batch(100, 104, codec::encode(&rows(100..=104), 3).unwrap(), 5),
        ),
        ("an unknown stream", {
            let mut b = batch(1, 5, codec::encode(&rows(1..=5), 3).unwrap(), 5);
            if let Some(Body::Batch(batch)) = &mut b.body {
                batch.stream = "orchard-co/pi/telemetry".into();
            }
            b
        }),
    ] {
        let c = connect(&relay, "vineyard-co", "rogue").await;
        let _control = hello(&c).await;
        let mut lane = c.open_uni().await.unwrap();
        write_message(&mut lane, &message).await.unwrap();
        closed_by_relay(&c, what).await;
    }

    // 5. A valid protobuf that is not a valid Envelope body for the lane: Hello on a data lane.
    let c = connect(&relay, "vineyard-co", "rogue").await;
    let _control = hello(&c).await;
    let mut lane = c.open_uni().await.unwrap();
    let bytes = Envelope {
        body: Some(Body::Hello(Hello::default())),
    }
    .encode_length_delimited_to_vec();
    lane.write_all(&bytes).await.unwrap();
    closed_by_relay(&c, "Hello on a data lane").await;

    // 6. Telemetry on a second lane while the first is open: their order would be lost.
    let c = connect(&relay, "vineyard-co", "rogue").await;
    let _control = hello(&c).await;
    for (first, last) in [(1, 5), (6, 10)] {
        let mut lane = c.open_uni().await.unwrap();
        let payload = codec::encode(&rows(first..=last), 3).unwrap();
        write_message(&mut lane, &batch(first, last, payload, 5))
            .await
            .unwrap();
    }
    closed_by_relay(&c, "one stream on two lanes").await;

    // The honest edge's session never noticed.
    send_and_ack(&mut honest_session, 11, 20).await;

    // What a certificate writes is always its own: the rogue's rows land under vineyard-co
    // / rogue, never under the orchard's edge it might wish to be.
    let rogue = connect(&relay, "vineyard-co", "rogue").await;
    let mut rogue_session = session(&rogue).await;
    send_and_ack(&mut rogue_session, 1, 5).await;
    let orchard = EdgeIdentity::new("orchard-co", "pi").unwrap();
    let rogue_id = EdgeIdentity::new("vineyard-co", "rogue").unwrap();
    let store = &relay.store;
    blocking(|| {
        assert_eq!(store.acked(&orchard, Stream::Telemetry).unwrap(), 0);
        assert_eq!(store.telemetry_count("orchard-co").unwrap(), 0);
        assert_eq!(store.acked(&rogue_id, Stream::Telemetry).unwrap(), 5);
        assert_eq!(store.telemetry_count("vineyard-co").unwrap(), 25);
    });

    // A certificate for an edge the relay never enrolled is refused at once.
    let stranger = connect(&relay, "vineyard-co", "never-enrolled").await;
    match tokio::time::timeout(Duration::from_secs(10), stranger.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => assert_eq!(
            close.error_code,
            cloud_relay::server::CLOSE_FORBIDDEN.into()
        ),
        other => panic!("an unenrolled edge was not refused: {other:?}"),
    }
    let never = EdgeIdentity::new("vineyard-co", "never-enrolled").unwrap();
    assert_eq!(
        blocking(|| store.edge_status(&never).unwrap()),
        EdgeStatus::Unknown
    );
}
