//! Routing, as mavlink-router does it: which system was heard on which link decides where an
//! addressed frame goes.
//!
//! - A frame without a target, or addressed to system 0, goes to every link but its source.
//! - A frame addressed to system S goes only to the links S was heard on (any of its
//!   components: a gimbal behind an autopilot is reached over the autopilot's link).
//! - Nothing is echoed back to the link it came from.
//! - A frame addressed to the station's own system id (`gcs/`) is an answer to the station:
//!   it goes to no link.
//! - Each link's outbound filter and queue policy apply (see [`crate::link::Link::send`]).

use std::sync::Arc;

use crate::frame::Frame;
use crate::link::{Link, LinkId, Links};

pub struct Router {
    links: Links,
    /// The station's own system id.
    own: u8,
    generation: u64,
    live: Vec<Arc<Link>>,
    /// For each system id, the links it has been heard on.
    heard: Vec<Vec<LinkId>>,
    /// Addressed frames whose target system was never heard anywhere.
    pub unroutable: u64,
}

impl Router {
    pub fn new(links: Links, own: u8) -> Router {
        Router {
            links,
            own,
            generation: u64::MAX,
            live: Vec::new(),
            heard: vec![Vec::new(); 256],
            unroutable: 0,
        }
    }

    /// Picks up links that came or went (a TCP client, say). Cheap when nothing changed.
    pub fn refresh(&mut self) {
        let generation = self.links.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.live = self.links.snapshot();
        let live: Vec<LinkId> = self.live.iter().map(|l| l.id).collect();
        for links in &mut self.heard {
            links.retain(|id| live.contains(id));
        }
    }

    /// A live link by id.
    pub fn link(&self, id: LinkId) -> Option<&Arc<Link>> {
        self.live.iter().find(|l| l.id == id)
    }

    /// Links a system has been heard on.
    pub fn links_of(&self, system: u8) -> &[LinkId] {
        &self.heard[usize::from(system)]
    }

    /// Sends one of the station's own frames to every link any of `systems` is heard on, once
    /// each.
    pub fn send_to(&self, systems: impl IntoIterator<Item = u8>, frame: &Frame) {
        let mut on: Vec<LinkId> = Vec::new();
        for system in systems {
            for id in self.links_of(system) {
                if !on.contains(id) {
                    on.push(*id);
                }
            }
        }
        for link in &self.live {
            if on.contains(&link.id) {
                link.send_own(frame.clone());
            }
        }
    }

    pub fn route(&mut self, from: LinkId, frame: &Frame) {
        self.route_withholding(from, frame, &[]);
    }

    /// Routes `frame` as [`Router::route`] does, but a broadcast goes to none of the links
    /// `withheld` systems are heard on (signing vehicles a broadcast request was not signed
    /// for, `signing.rs`).
    pub fn route_withholding(&mut self, from: LinkId, frame: &Frame, withheld: &[u8]) {
        let heard = &mut self.heard[usize::from(frame.system_id())];
        if !heard.contains(&from) {
            heard.push(from);
        }
        match frame.target() {
            Some((system, _)) if system == self.own => {}
            Some((system, _)) if system != 0 => {
                let on = &self.heard[usize::from(system)];
                let mut sent = false;
                for link in &self.live {
                    if link.id != from && on.contains(&link.id) {
                        link.send(frame.clone());
                        sent = true;
                    }
                }
                if !sent && !on.contains(&from) {
                    self.unroutable += 1;
                }
            }
            _ => {
                let withheld_on = |id: &LinkId| {
                    withheld
                        .iter()
                        .any(|&s| self.heard[usize::from(s)].contains(id))
                };
                for link in &self.live {
                    if link.id != from && !withheld_on(&link.id) {
                        link.send(frame.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MavMessage;
    use crate::frame::Version;
    use crate::link::{Endpoint, LinkConfig, MsgFilter};
    use mavlink::dialects::ardupilotmega as apm;

    fn link(links: &Links, port: u16, filter_out: MsgFilter) -> Arc<Link> {
        let endpoint: Endpoint = format!("udpout:127.0.0.1:{port}").parse().unwrap();
        let l = links.add(
            endpoint.to_string(),
            LinkConfig {
                filter_out,
                ..endpoint.into()
            },
        );
        l.out.set_open(true);
        l
    }

    fn heartbeat(sys: u8) -> Frame {
        Frame::encode(
            Version::V2,
            sys,
            1,
            0,
            &MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA::default()),
        )
    }

    fn command_to(sys: u8) -> Frame {
        let msg = MavMessage::COMMAND_LONG(apm::COMMAND_LONG_DATA {
            target_system: sys,
            target_component: 1,
            ..Default::default()
        });
        Frame::encode(Version::V2, 255, 190, 0, &msg)
    }

    #[test]
    fn addressed_frames_reach_only_their_vehicle() {
        let links = Links::default();
        let v1 = link(&links, 1, MsgFilter::default());
        let v2 = link(&links, 2, MsgFilter::default());
        let gcs = link(&links, 3, MsgFilter::default());
        let mut r = Router::new(links, 245);
        r.refresh();
        r.route(v1.id, &heartbeat(1));
        r.route(v2.id, &heartbeat(2));
        assert_eq!(gcs.out.len(), 2, "vehicle traffic reaches the GCS");
        assert_eq!(v1.out.len(), 1, "and the other vehicle, but no echo");
        r.route(gcs.id, &command_to(2));
        assert_eq!(v2.out.len(), 2);
        assert_eq!(v1.out.len(), 1, "the command did not go to vehicle 1");
        r.route(gcs.id, &command_to(9));
        assert_eq!(r.unroutable, 1);
        // An answer to the station itself goes nowhere and is not unroutable.
        r.route(v1.id, &command_to(245));
        assert_eq!((gcs.out.len(), v2.out.len(), r.unroutable), (2, 2, 1));
    }

    #[test]
    fn the_stations_frames_go_once_to_each_link_of_their_vehicles() {
        let links = Links::default();
        let radio = link(&links, 1, MsgFilter::default());
        let wifi = link(&links, 2, MsgFilter::default());
        let gcs = link(&links, 3, MsgFilter::default());
        let mut r = Router::new(links, 245);
        r.refresh();
        r.route(radio.id, &heartbeat(1));
        r.route(radio.id, &heartbeat(2));
        r.route(wifi.id, &heartbeat(2));
        let (radio_before, wifi_before, gcs_before) =
            (radio.out.len(), wifi.out.len(), gcs.out.len());
        r.send_to([1, 2], &heartbeat(245));
        assert_eq!(radio.out.len(), radio_before + 1, "once on a shared link");
        assert_eq!(wifi.out.len(), wifi_before + 1);
        assert_eq!(gcs.out.len(), gcs_before, "not to a link no vehicle is on");
    }

    #[test]
    fn outbound_filters_apply() {
        let links = Links::default();
        let v = link(&links, 1, MsgFilter::default());
        let gcs = link(
            &links,
            2,
            MsgFilter {
                allow: vec![],
                deny: vec![0],
            },
        );
        let mut r = Router::new(links, 245);
        r.refresh();
        r.route(v.id, &heartbeat(1));
        assert_eq!(gcs.out.len(), 0, "heartbeats are denied on this link");
    }

    #[test]
    fn removed_links_are_forgotten() {
        let links = Links::default();
        let v = link(&links, 1, MsgFilter::default());
        let mut r = Router::new(links.clone(), 245);
        r.refresh();
        r.route(v.id, &heartbeat(7));
        assert_eq!(r.links_of(7), &[v.id]);
        links.remove(v.id);
        r.refresh();
        assert!(r.links_of(7).is_empty());
    }
}
