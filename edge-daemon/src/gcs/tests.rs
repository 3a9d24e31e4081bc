use std::collections::HashMap;

use super::*;
use crate::clock::Clock;

const LOST_AFTER: Duration = Duration::from_secs(5);

/// A fleet and the station's component, fed frames as ingest does.
struct Station {
    fleet: Fleet,
    clock: Clock,
    gcs: Gcs,
    t0: Instant,
}

impl Station {
    fn new(config: GcsSection) -> Station {
        Station {
            fleet: Fleet::new(LOST_AFTER, HashMap::new()),
            clock: Clock::default(),
            gcs: Gcs::new(&config, LOST_AFTER),
            t0: Instant::now(),
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn hear(&mut self, secs: f64, frame: Frame) {
        let at = self.at(secs);
        self.fleet.observe(0, &frame, at, &mut self.clock);
        self.gcs.observe(&frame, at, &self.fleet);
    }

    /// Ticks at `secs` and returns what the station sent, decoded.
    fn tick(&mut self, secs: f64) -> Vec<(To, MavMessage)> {
        let at = self.at(secs);
        self.gcs.tick(at, self.clock.wall_us(at), &self.fleet);
        self.gcs
            .take_outbox()
            .into_iter()
            .map(|(to, f)| {
                assert_eq!((f.system_id(), f.component_id()), (245, 190));
                (to, f.decode().expect("the station's frames decode"))
            })
            .collect()
    }
}

fn from(system: u8, component: u8, message: &MavMessage) -> Frame {
    Frame::encode(Version::V2, system, component, 0, message)
}

fn heartbeat(system: u8, autopilot: apm::MavAutopilot) -> Frame {
    from(
        system,
        1,
        &MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA {
            mavtype: apm::MavType::MAV_TYPE_QUADROTOR,
            autopilot,
            ..Default::default()
        }),
    )
}

fn position(system: u8, boot_ms: u32) -> Frame {
    from(
        system,
        1,
        &MavMessage::GLOBAL_POSITION_INT(apm::GLOBAL_POSITION_INT_DATA {
            time_boot_ms: boot_ms,
            lat: 1,
            ..Default::default()
        }),
    )
}

fn ack(system: u8, command: apm::MavCmd, result: apm::MavResult) -> Frame {
    from(
        system,
        1,
        &MavMessage::COMMAND_ACK(apm::COMMAND_ACK_DATA {
            command,
            result,
            target_system: 245,
            target_component: 190,
            ..Default::default()
        }),
    )
}

const ARDUPILOT: apm::MavAutopilot = apm::MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA;
const PX4: apm::MavAutopilot = apm::MavAutopilot::MAV_AUTOPILOT_PX4;

/// (stream id, rate) of each REQUEST_DATA_STREAM sent.
fn streams(sent: &[(To, MavMessage)]) -> Vec<(u8, u16)> {
    sent.iter()
        .filter_map(|(_, m)| match m {
            MavMessage::REQUEST_DATA_STREAM(r) => {
                assert_eq!(
                    (r.target_system, r.target_component, r.start_stop),
                    (1, 1, 1)
                );
                Some((r.req_stream_id as u8, r.req_message_rate))
            }
            _ => None,
        })
        .collect()
}

/// (command, param1) of each COMMAND_LONG sent.
fn commands(sent: &[(To, MavMessage)]) -> Vec<(apm::MavCmd, f32)> {
    sent.iter()
        .filter_map(|(_, m)| match m {
            MavMessage::COMMAND_LONG(c) => Some((c.command, c.param1)),
            _ => None,
        })
        .collect()
}

fn heartbeats(sent: &[(To, MavMessage)]) -> usize {
    sent.iter()
        .filter(|(to, m)| match m {
            MavMessage::HEARTBEAT(h) => {
                assert_eq!(*to, To::EveryVehicleLink);
                assert_eq!(h.mavtype, apm::MavType::MAV_TYPE_GCS);
                true
            }
            _ => false,
        })
        .count()
}

const REQUEST_MESSAGE: apm::MavCmd = apm::MavCmd::MAV_CMD_REQUEST_MESSAGE;

#[test]
fn a_new_ardupilot_is_asked_for_streams_version_and_home_until_it_answers() {
    let mut s = Station::new(GcsSection::default());
    assert!(s.tick(0.0).is_empty(), "no vehicle, no heartbeat");
    s.hear(0.0, heartbeat(1, ARDUPILOT));
    let sent = s.tick(0.1);
    assert_eq!(heartbeats(&sent), 1);
    assert_eq!(
        streams(&sent),
        [(6, 5), (2, 2), (10, 4), (11, 4), (12, 1)],
        "POSITION, EXTENDED_STATUS, EXTRA1-3 at the default rates"
    );
    assert_eq!(
        commands(&sent),
        [(REQUEST_MESSAGE, 148.0), (REQUEST_MESSAGE, 242.0)]
    );
    assert!(sent
        .iter()
        .all(|(to, m)| matches!(m, MavMessage::HEARTBEAT(_)) || *to == To::Vehicle(1)));

    // Nothing again before the backoff; the heartbeat once a second.
    assert!(s.tick(0.5).is_empty());
    s.hear(1.0, heartbeat(1, ARDUPILOT));
    let sent = s.tick(1.2);
    assert_eq!(heartbeats(&sent), 1);
    assert_eq!(streams(&sent).len(), 5, "unanswered after 1 s: asked again");

    // Positions answer the streams, AUTOPILOT_VERSION and HOME_POSITION the rest.
    s.hear(1.3, position(1, 10_000));
    s.hear(
        1.3,
        from(1, 1, &MavMessage::AUTOPILOT_VERSION(Default::default())),
    );
    let sent = s.tick(3.5);
    assert!(streams(&sent).is_empty());
    assert_eq!(
        commands(&sent),
        [(REQUEST_MESSAGE, 242.0)],
        "home still unknown"
    );
    s.hear(
        3.6,
        from(1, 1, &MavMessage::HOME_POSITION(Default::default())),
    );
    s.hear(3.6, position(1, 12_000));
    s.hear(3.6, heartbeat(1, ARDUPILOT));
    let sent = s.tick(6.0);
    assert!(
        commands(&sent).is_empty() && streams(&sent).is_empty(),
        "{sent:?}"
    );
}

#[test]
fn a_reboot_a_silence_and_a_returning_link_make_it_ask_again() {
    let mut s = Station::new(GcsSection::default());
    let answered = |s: &mut Station, t: f64, boot_ms: u32| {
        s.hear(t, heartbeat(1, ARDUPILOT));
        s.hear(t, position(1, boot_ms));
        s.hear(
            t,
            from(1, 1, &MavMessage::AUTOPILOT_VERSION(Default::default())),
        );
        s.hear(
            t,
            from(1, 1, &MavMessage::HOME_POSITION(Default::default())),
        );
    };
    s.hear(0.0, heartbeat(1, ARDUPILOT));
    s.tick(0.0);
    answered(&mut s, 0.5, 60_000);
    assert!(commands(&s.tick(1.0)).is_empty());

    // A reboot: boot time back near zero.
    answered(&mut s, 1.5, 60_100);
    s.hear(1.6, position(1, 900));
    let sent = s.tick(1.7);
    assert_eq!(streams(&sent).len(), 5, "asked again after the reboot");
    assert_eq!(commands(&sent).len(), 2);
    answered(&mut s, 1.8, 1_000);

    // Positions stop while heartbeats go on (a reboot that lost the rates): all asked again.
    s.hear(3.0, heartbeat(1, ARDUPILOT));
    s.hear(4.0, heartbeat(1, ARDUPILOT));
    s.hear(5.0, heartbeat(1, ARDUPILOT));
    let sent = s.tick(5.0);
    assert_eq!((streams(&sent).len(), commands(&sent).len()), (5, 2));

    // Not heard for longer than the link-lost silence: nothing asked; heard again: all of it.
    answered(&mut s, 5.5, 5_000);
    let sent = s.tick(12.0);
    assert!(streams(&sent).is_empty() && commands(&sent).is_empty());
    s.hear(13.0, heartbeat(1, ARDUPILOT));
    let sent = s.tick(13.0);
    assert_eq!((streams(&sent).len(), commands(&sent).len()), (5, 2));
}

#[test]
fn px4_gets_message_intervals_and_a_refusal_falls_back() {
    let mut s = Station::new(GcsSection::default());
    s.hear(0.0, heartbeat(1, PX4));
    let sent = s.tick(0.0);
    let intervals: Vec<(f32, f32)> = sent
        .iter()
        .filter_map(|(_, m)| match m {
            MavMessage::COMMAND_LONG(c)
                if c.command == apm::MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL =>
            {
                Some((c.param1, c.param2))
            }
            _ => None,
        })
        .collect();
    assert_eq!(intervals.len(), 8);
    assert!(
        intervals.contains(&(33.0, 200_000.0)),
        "positions at 5 Hz: {intervals:?}"
    );
    assert!(streams(&sent).is_empty());

    // A vehicle that supports neither SET_MESSAGE_INTERVAL nor REQUEST_MESSAGE.
    let unsupported = apm::MavResult::MAV_RESULT_UNSUPPORTED;
    s.hear(
        0.1,
        ack(1, apm::MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL, unsupported),
    );
    s.hear(0.1, ack(1, REQUEST_MESSAGE, unsupported));
    let sent = s.tick(0.2);
    assert_eq!(
        streams(&sent).len(),
        5,
        "REQUEST_DATA_STREAM instead, at once"
    );
    assert_eq!(
        commands(&sent),
        [
            (apm::MavCmd::MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, 1.0),
            (apm::MavCmd::MAV_CMD_GET_HOME_POSITION, 0.0)
        ]
    );
    // An ack meant for another ground station changes nothing.
    let mut other = ack(1, apm::MavCmd::MAV_CMD_GET_HOME_POSITION, unsupported);
    if let Some(MavMessage::COMMAND_ACK(mut a)) = other.decode() {
        a.target_system = 255;
        other = from(1, 1, &MavMessage::COMMAND_ACK(a));
    }
    s.hear(0.3, other);
    s.hear(
        0.3,
        ack(
            1,
            apm::MavCmd::MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES,
            unsupported,
        ),
    );
    let sent = s.tick(2.5);
    assert_eq!(
        commands(&sent),
        [(apm::MavCmd::MAV_CMD_GET_HOME_POSITION, 0.0)],
        "no way left to ask for the version; home is asked again"
    );
}

#[test]
fn it_never_asks_for_less_than_another_ground_station_did() {
    let mut s = Station::new(GcsSection::default());
    s.hear(0.0, heartbeat(1, ARDUPILOT));
    let qgc = |stream: apm::MavDataStream, rate: u16| {
        from(
            255,
            190,
            &MavMessage::REQUEST_DATA_STREAM(apm::REQUEST_DATA_STREAM_DATA {
                req_message_rate: rate,
                target_system: 1,
                target_component: 1,
                req_stream_id: stream,
                start_stop: 1,
            }),
        )
    };
    s.hear(0.0, qgc(apm::MavDataStream::MAV_DATA_STREAM_POSITION, 10));
    s.hear(0.0, qgc(apm::MavDataStream::MAV_DATA_STREAM_EXTRA3, 3));
    s.hear(0.0, qgc(apm::MavDataStream::MAV_DATA_STREAM_EXTRA1, 1));
    let sent = s.tick(0.0);
    assert_eq!(
        streams(&sent),
        [(6, 10), (2, 2), (10, 4), (11, 4), (12, 3)],
        "the higher of the two rates for each group"
    );
}

#[test]
fn nothing_is_sent_when_switched_off() {
    let mut s = Station::new(GcsSection {
        heartbeat: false,
        request_data: false,
        ..Default::default()
    });
    s.hear(0.0, heartbeat(1, ARDUPILOT));
    assert!(s.tick(0.0).is_empty());
    assert!(s.tick(5.0).is_empty());
}
