//! What HQ reads and manages, behind a trait like the sync path's [`super::RelayStore`]:
//! tokens, the merged fleet, history, alerts, edges, sharing agreements. (Editable records,
//! mission proposals among them, are the sync path's: see `RelayStore::apply_changes`.)
//!
//! Every method takes the caller's org and answers only from it; crossing orgs happens in one
//! place, [`HqStore::shares_to`], which the COP reads.

use serde::Serialize;

use super::StoreError;

/// What a token may do within its org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees the org's picture.
    Viewer,
    /// Also proposes missions and edits the fleet registry.
    Operator,
    /// Also manages tokens and sharing.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub org: String,
    pub role: Role,
    pub name: String,
}

/// A vehicle of the org, however many of its edges hear it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetVehicle {
    pub id: i64,
    pub name: String,
    /// The autopilot's uid (16 hex digits) when it reported one.
    pub uid: Option<String>,
    pub autopilot: u32,
    pub mav_type: u32,
    /// (edge, system id) pairs that hear it.
    pub sightings: Vec<(String, u32)>,
}

impl FleetVehicle {
    /// The fleet from rows of (vehicle without sightings, one sighting), a vehicle's rows
    /// next to each other (as both backends' fleet queries order them).
    pub fn group(rows: impl IntoIterator<Item = (FleetVehicle, (String, u32))>) -> Vec<Self> {
        let mut fleet: Vec<FleetVehicle> = Vec::new();
        for (mut vehicle, sighting) in rows {
            match fleet.last_mut() {
                Some(last) if last.id == vehicle.id => last.sightings.push(sighting),
                _ => {
                    vehicle.sightings.push(sighting);
                    fleet.push(vehicle);
                }
            }
        }
        fleet
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub edge: String,
    pub seq: u64,
    pub t_us: i64,
    /// The fleet vehicle, when the event is about one the registry knows.
    pub vehicle_id: Option<i64>,
    pub sysid: u32,
    pub kind: String,
    pub code: String,
    pub severity: String,
    pub message: String,
    /// Relay time the event was stored.
    pub received_us: i64,
    /// For an alert: who acknowledged it at its station, and when.
    pub acknowledged: Option<Acknowledged>,
}

/// Where a page of events ends: the last event's edge time, edge and sequence. Written
/// `{t_us}.{seq}.{edge}` for clients, who pass it back as `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    pub t_us: i64,
    pub edge: String,
    pub seq: u64,
}

impl EventCursor {
    pub fn of(e: &EventRecord) -> EventCursor {
        EventCursor {
            t_us: e.t_us,
            edge: e.edge.clone(),
            seq: e.seq,
        }
    }

    pub fn parse(text: &str) -> Option<EventCursor> {
        let mut parts = text.splitn(3, '.');
        Some(EventCursor {
            t_us: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            edge: parts.next().filter(|e| !e.is_empty())?.to_string(),
        })
    }
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.t_us, self.seq, self.edge)
    }
}

/// An alert's acknowledgement, as it arrived from the station.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Acknowledged {
    pub by: String,
    pub t_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EdgeRecord {
    pub edge: String,
    pub enrolled_us: i64,
    pub revoked: bool,
    pub telemetry_acked: u64,
    pub events_acked: u64,
    /// Ranges the relay acknowledged and later lost (restored from backup), never hidden.
    pub gaps: Vec<(String, u64, u64)>,
}

/// A sharing agreement: `from` lets `to` see some of its vehicles' live state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    pub id: i64,
    pub from_org: String,
    pub to_org: String,
    /// Vehicle names or uids; empty: every vehicle of `from_org`.
    pub vehicles: Vec<String>,
    /// A GeoJSON Polygon or MultiPolygon (as text): shared only while inside it.
    pub area: Option<String>,
    /// Positions snapped to a grid of this many metres.
    pub coarsen_m: Option<f64>,
    pub created_us: i64,
}

pub trait HqStore: Send + Sync + 'static {
    /// Creates a token and returns its secret, which is stored only as a hash.
    fn create_token(&self, org: &str, role: Role, name: &str) -> Result<String, StoreError>;
    /// The token a secret belongs to, if any.
    fn token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError>;
    fn org_exists(&self, org: &str) -> Result<bool, StoreError>;
    fn fleet(&self, org: &str) -> Result<Vec<FleetVehicle>, StoreError>;
    /// History of one vehicle from every edge that heard it, in time order, with samples
    /// heard by several edges kept once; with `after`, the page after the one that gave it.
    fn vehicle_telemetry(
        &self,
        org: &str,
        vehicle_id: i64,
        from_us: i64,
        to_us: i64,
        after: Option<&super::history::HistoryCursor>,
        limit: u32,
    ) -> Result<super::history::HistoryPage, StoreError>;
    /// Events newest first (by edge time, then edge, then sequence), only those after
    /// `before` in that order when given; `kind` as in the protocol (1 alert, 2 state, 3
    /// identity, 4 ack).
    fn events(
        &self,
        org: &str,
        kind: Option<i32>,
        before: Option<&EventCursor>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    fn edges(&self, org: &str) -> Result<Vec<EdgeRecord>, StoreError>;
    fn grant_share(&self, share: &Share) -> Result<i64, StoreError>;
    /// Ends every agreement from `from` to `to`; returns how many were active.
    fn revoke_share(&self, from: &str, to: &str) -> Result<usize, StoreError>;
    /// Active agreements that let `org` see others' vehicles.
    fn shares_to(&self, org: &str) -> Result<Vec<Share>, StoreError>;
}
