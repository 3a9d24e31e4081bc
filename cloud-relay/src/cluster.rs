//! Several relay instances as one relay: what one instance learns live reaches the others
//! over NATS.
//!
//! Instances that share a PostgreSQL store already agree on everything durable: marks,
//! chunks, events, the registry, records, enrolment and revocation (each instance asks the
//! store once a second which of its connected edges are no longer enrolled, whichever
//! instance revoked them). What only one instance
//! knows is live: the newest state of the vehicles its edges report, which edges are
//! connected to it, and that it has just stored events or a record change (HQ streams and
//! downsync wake on those). [`LiveView`] hands every such change to this module, which
//! publishes it on the relay's subject (`[cluster] subject`; its `v2` names the message
//! format below); every other instance applies it to its own picture.
//!
//! Plain NATS, not JetStream: nothing here needs to outlive the moment. A message lost while
//! an instance reconnects costs one live report (the next one replaces it), one heartbeat
//! (sessions are re-announced every [`HEARTBEAT`]), or one wake-up (downsync polls and HQ
//! streams re-read the store every second anyway). Durability stays in the store, which has
//! one source of truth per fact; a second durable log beside it would be a second truth.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::live::{LiveView, PeerMessage};

/// How often an instance announces its sessions (see `live::PEER_SESSIONS_EXPIRE`).
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// Local changes waiting to be published; beyond this they are dropped and counted.
const QUEUE: usize = 16_384;

/// Most local changes one NATS message carries. The publisher sends everything that queued
/// while it sent the last message, together: under load (5,000 vehicle states a second at
/// 1,000 edges) that is one NATS message, one encode and one wake-up at every other
/// instance per few hundred changes instead of per change; when quiet, each change still
/// leaves at once, alone.
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
}

/// One message on the subject: who says it, and what, oldest first.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    instance: String,
    messages: Vec<PeerMessage>,
}

/// This instance's membership: stops publishing and listening when dropped.
pub struct Cluster {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Cluster {
    /// Connects to NATS at `url` as `instance` and starts sharing `live` with the other
    /// instances on `subject`. An instance must serve its stations whether NATS is up or
    /// not (the store, not NATS, holds what they send): if NATS cannot be reached now or
    /// later, the client keeps trying on its own and the instance's picture is its own until
    /// it is back; what could not be sent meanwhile is dropped and counted. Fails only on a
    /// `url` that is not one.
    pub async fn join(
        url: &str,
        subject: &str,
        instance: &str,
        live: Arc<LiveView>,
    ) -> Result<Cluster, ClusterError> {
        let unreachable = Arc::new(AtomicBool::new(false));
        let client = async_nats::ConnectOptions::new()
            // The instance's own messages are already in its picture.
            .no_echo()
            .name(format!("cloud-relay {instance}"))
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let unreachable = unreachable.clone();
                async move { log_event(&event, &unreachable) }
            })
            .connect(url)
            .await
            .map_err(|source| ClusterError::Connect {
                url: url.to_string(),
                source,
            })?;
        let mut subscriber = client
            .subscribe(subject.to_string())
            .await
            .map_err(|source| ClusterError::Subscribe {
                subject: subject.to_string(),
                source,
            })?;
        let (peers, outgoing) = mpsc::channel(QUEUE);
        live.join_cluster(peers);

        let listen = {
            let live = live.clone();
            tokio::spawn(async move {
                use futures_util::StreamExt as _;
                while let Some(message) = subscriber.next().await {
                    match serde_json::from_slice::<Envelope>(&message.payload) {
                        Ok(envelope) => {
                            let n = envelope.messages.len() as u64;
                            live.metrics.peer_messages_received.fetch_add(n, Relaxed);
                            for m in envelope.messages {
                                live.apply_peer(&envelope.instance, m);
                            }
                        }
                        Err(e) => {
                            live.metrics.peer_messages_malformed.fetch_add(1, Relaxed);
                            tracing::debug!("peer message not understood: {e}");
                        }
                    }
                }
            })
        };
        let publish = tokio::spawn(publish(
            client,
            subject.to_string(),
            instance.to_string(),
            live,
            outgoing,
        ));
        tracing::info!(%url, %instance, %subject, "joined the relay cluster");
        Ok(Cluster {
            tasks: vec![listen, publish],
        })
    }
}

/// Logs what the NATS client reports: losing NATS once (not every attempt to reach it again,
/// a few a second at first), and finding it again.
fn log_event(event: &async_nats::Event, unreachable: &AtomicBool) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            unreachable.store(false, Relaxed);
            tracing::info!("connected to NATS: sharing the live picture");
        }
        Event::Disconnected | Event::ClientError(_) => {
            if unreachable.swap(true, Relaxed) {
                tracing::debug!("NATS: {event}");
            } else {
                tracing::warn!(
                    "NATS unreachable ({event}): the live picture is this instance's own until \
                     it is back; stations still sync through the store"
                );
            }
        }
        other => tracing::warn!("NATS: {other}"),
    }
}

/// Publishes local changes as they come, and the session heartbeat.
async fn publish(
    client: async_nats::Client,
    subject: String,
    instance: String,
    live: Arc<LiveView>,
    mut outgoing: mpsc::Receiver<PeerMessage>,
) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        let first = tokio::select! {
            message = outgoing.recv() => match message {
                Some(m) => m,
                None => return,
            },
            _ = heartbeat.tick() => live.local_sessions(),
        };
        let messages = gather(first, &mut outgoing);
        let n = messages.len() as u64;
        let envelope = Envelope {
            instance: instance.clone(),
            messages,
        };
        let payload = match serde_json::to_vec(&envelope) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("peer message not encoded: {e}");
                continue;
            }
        };
        // Publishing only queues in the client; it fails when its buffer is full (NATS
        // unreachable for a while).
        match client.publish(subject.clone(), payload.into()).await {
            Ok(()) => {
                live.metrics.peer_messages_sent.fetch_add(n, Relaxed);
            }
            Err(e) => {
                live.metrics.peer_messages_dropped.fetch_add(n, Relaxed);
                tracing::debug!("peer messages not published: {e}");
            }
        }
    }
}

/// `first` and whatever else is already queued behind it, up to [`BATCH`].
fn gather(first: PeerMessage, outgoing: &mut mpsc::Receiver<PeerMessage>) -> Vec<PeerMessage> {
    let mut messages = vec![first];
    while messages.len() < BATCH {
        match outgoing.try_recv() {
            Ok(m) => messages.push(m),
            Err(_) => break,
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{Session, Sighting, State};

    #[test]
    fn messages_travel_as_tagged_json() {
        let envelope = Envelope {
            instance: "relay-b".into(),
            messages: vec![PeerMessage::Sessions {
                sessions: vec![(
                    "vineyard-co".into(),
                    "pi-north".into(),
                    Session {
                        since_us: 1,
                        last_batch_us: Some(2),
                    },
                )],
            }],
        };
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["messages"][0]["type"], "sessions");
        assert_eq!(json["instance"], "relay-b");
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.messages, envelope.messages);
    }

    #[test]
    fn what_queued_goes_out_together_and_no_more_than_a_batch() {
        let (tx, mut rx) = mpsc::channel(BATCH * 2);
        let closed = |i: usize| PeerMessage::SessionClosed {
            org: "o".into(),
            edge: i.to_string(),
        };
        for i in 1..BATCH + 10 {
            tx.try_send(closed(i)).unwrap();
        }
        let first = gather(closed(0), &mut rx);
        assert_eq!(first.len(), BATCH);
        assert_eq!(first[1], closed(1), "in order");
        assert_eq!(gather(closed(0), &mut rx).len(), 1 + 10, "the rest");
        assert_eq!(gather(closed(0), &mut rx).len(), 1, "a quiet moment: alone");
    }

    #[test]
    fn a_peer_state_updates_the_picture_and_goes_no_further() {
        let live = LiveView::default();
        let (peers, mut outgoing) = mpsc::channel(4);
        live.join_cluster(peers);
        let mut updates = live.subscribe();
        let sighting = Sighting {
            org: "vineyard-co".into(),
            edge: "pi-north".into(),
            sysid: 1,
        };
        let state = State {
            t_us: 10,
            lat: 38.29,
            lon: -122.45,
            alt_msl_m: 20.0,
            heading_deg: None,
            battery_pct: Some(80),
            armed: true,
            mode: Some("AUTO".into()),
            custom_mode: 3,
        };
        live.apply_peer(
            "relay-b",
            PeerMessage::State {
                sighting: sighting.clone(),
                state: state.clone(),
            },
        );
        assert_eq!(live.state(&sighting), Some(state.clone()));
        assert!(updates.try_recv().is_ok(), "HQ streams hear of it");
        assert!(outgoing.try_recv().is_err(), "not sent back out");

        // A local observation newer than it is sent out.
        let newer = State { t_us: 11, ..state };
        live.observe(sighting.clone(), newer.clone());
        assert_eq!(
            outgoing.try_recv().unwrap(),
            PeerMessage::State {
                sighting,
                state: newer
            }
        );
    }

    #[test]
    fn another_instances_sessions_count_until_its_heartbeat_stops() {
        let live = LiveView::default();
        let session = Session {
            since_us: 5,
            last_batch_us: None,
        };
        let announce = |list: Vec<(String, String, Session)>| {
            live.apply_peer("relay-b", PeerMessage::Sessions { sessions: list })
        };
        announce(vec![("o".into(), "e".into(), session)]);
        assert_eq!(live.session("o", "e"), Some(session));
        // The next heartbeat no longer lists it: closed there.
        announce(vec![]);
        assert_eq!(live.session("o", "e"), None);
        announce(vec![("o".into(), "e".into(), session)]);
        // Another instance's close does not close relay-b's session.
        live.apply_peer(
            "relay-c",
            PeerMessage::SessionClosed {
                org: "o".into(),
                edge: "e".into(),
            },
        );
        assert_eq!(live.session("o", "e"), Some(session));
    }
}
