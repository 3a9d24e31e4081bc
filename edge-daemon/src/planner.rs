//! Missions from fields: a vineyard block (a `fields` record) becomes a mission the station
//! can store and upload.
//!
//! The passes come from the lawnmower in [`crate::survey`]: along the vine rows (by default
//! the direction of the block's longest edge, which is how vines are planted), spaced by the
//! row pitch for spraying (one pass per row) or by the camera's footprint less its side
//! overlap for a survey, around holes, and, when the block has room, turning outside it.
//! Around them the mission has what a flight needs: the home item ArduPilot overwrites, a
//! takeoff to the altitude, the speed, and a return to launch.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::gcs::MissionItem;
use crate::survey::{self, LatLon, SurveyPlan};

/// MAV_FRAME_GLOBAL_RELATIVE_ALT: altitudes above home.
const RELATIVE_ALT: u8 = 3;
/// MAV_FRAME_MISSION: items without a position.
const NO_POSITION: u8 = 2;

/// What the passes are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Imaging: passes a footprint apart, less the side overlap.
    #[default]
    Survey,
    /// Spraying: one pass over every vine row, a row pitch apart.
    Spray,
}

/// How to cover a field.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// Metres above home.
    #[schema(minimum = 1, maximum = 500)]
    pub alt_m: f64,
    #[schema(minimum = 0.5, maximum = 30)]
    pub speed_mps: f64,
    #[serde(default)]
    pub pattern: Pattern,
    /// The vine row pitch: the distance between spray passes, and between survey passes
    /// when no footprint is given.
    #[schema(minimum = 0.5, maximum = 200)]
    pub row_spacing_m: Option<f64>,
    /// For a survey: the camera's footprint across the track, metres.
    #[schema(minimum = 0.5, maximum = 500)]
    pub footprint_m: Option<f64>,
    /// For a survey: the share of the footprint adjacent passes overlap (0 to 0.9).
    #[schema(minimum = 0, maximum = 0.9)]
    pub side_overlap: Option<f64>,
    /// Direction of the passes, degrees from north; default the field's longest edge.
    #[schema(minimum = 0, maximum = 360)]
    pub heading_deg: Option<f64>,
    /// How far past the block's edge the vehicle may turn, metres; 0 (the default) keeps
    /// spray turns inside. A survey pass reaches as far as the field does within its swath,
    /// so its ends may lie up to half a spacing more outside a slanted edge.
    #[schema(minimum = 0, maximum = 100)]
    pub turn_outside_m: Option<f64>,
    /// The key to store the mission under; default `plan-<field>`.
    pub mission: Option<String>,
}

/// A field's shape: its boundary and any holes, in degrees.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldShape {
    pub outer: Vec<LatLon>,
    pub holes: Vec<Vec<LatLon>>,
}

/// A planned mission and how it was made.
#[derive(Debug, Clone)]
pub struct Planned {
    pub items: Vec<MissionItem>,
    pub heading_deg: f64,
    pub spacing_m: f64,
    pub passes: usize,
    pub length_m: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// The field record holds no usable polygon.
    #[error("the field has no polygon: give it `polygon` ([[lat, lon], …]) or a GeoJSON Polygon `geometry`")]
    NoShape,
    /// A request value out of range; the field's name and why.
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("no pass fits in the field at this spacing")]
    Empty,
}

/// The shape of a field record: `polygon` as `[[lat, lon], …]`, or `geometry` as a GeoJSON
/// Polygon (`[[[lon, lat], …] outer, [[lon, lat], …] holes…]`).
pub fn shape_of(
    fields: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<FieldShape, PlanError> {
    let ring = |v: &serde_json::Value, lon_first: bool| -> Option<Vec<LatLon>> {
        v.as_array()?
            .iter()
            .map(|p| {
                let (a, b) = (p.get(0)?.as_f64()?, p.get(1)?.as_f64()?);
                Some(if lon_first {
                    LatLon { lat: b, lon: a }
                } else {
                    LatLon { lat: a, lon: b }
                })
            })
            .collect()
    };
    if let Some(outer) = fields.get("polygon").and_then(|p| ring(p, false)) {
        return Ok(FieldShape {
            outer,
            holes: Vec::new(),
        });
    }
    let geometry = fields.get("geometry").ok_or(PlanError::NoShape)?;
    if geometry["type"] != "Polygon" {
        return Err(PlanError::NoShape);
    }
    let rings: Vec<Vec<LatLon>> = geometry["coordinates"]
        .as_array()
        .ok_or(PlanError::NoShape)?
        .iter()
        .map(|r| ring(r, true))
        .collect::<Option<_>>()
        .ok_or(PlanError::NoShape)?;
    let mut rings = rings.into_iter();
    let outer = rings.next().ok_or(PlanError::NoShape)?;
    Ok(FieldShape {
        outer,
        holes: rings.collect(),
    })
}

/// A request's numbers, checked.
struct Checked {
    alt: f64,
    speed: f64,
    spacing: f64,
    heading: Option<f64>,
    turn: f64,
}

impl PlanRequest {
    /// Whether every number is in range, naming the first that is not.
    pub fn check(&self) -> Result<(), PlanError> {
        self.checked().map(|_| ())
    }

    fn checked(&self) -> Result<Checked, PlanError> {
        let within = |name: &'static str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(PlanError::Invalid(name, format!("between {lo} and {hi}")))
            }
        };
        let row = self
            .row_spacing_m
            .map(|r| within("row_spacing_m", r, 0.5, 200.0))
            .transpose()?;
        let spacing = match (self.pattern, self.footprint_m) {
            (Pattern::Spray, _) => row.ok_or_else(|| {
                PlanError::Invalid(
                    "row_spacing_m",
                    "a spray pattern needs the row pitch".into(),
                )
            })?,
            (Pattern::Survey, Some(footprint)) => {
                let footprint = within("footprint_m", footprint, 0.5, 500.0)?;
                let overlap = within("side_overlap", self.side_overlap.unwrap_or(0.0), 0.0, 0.9)?;
                footprint * (1.0 - overlap)
            }
            (Pattern::Survey, None) => row.ok_or_else(|| {
                PlanError::Invalid("row_spacing_m", "give row_spacing_m or footprint_m".into())
            })?,
        };
        Ok(Checked {
            alt: within("alt_m", self.alt_m, 1.0, 500.0)?,
            speed: within("speed_mps", self.speed_mps, 0.5, 30.0)?,
            spacing,
            heading: self
                .heading_deg
                .map(|h| within("heading_deg", h, 0.0, 360.0))
                .transpose()?,
            turn: within(
                "turn_outside_m",
                self.turn_outside_m.unwrap_or(0.0),
                0.0,
                100.0,
            )?,
        })
    }
}

/// Plans the mission covering `field` as `request` asks.
pub fn plan(field: &FieldShape, request: &PlanRequest) -> Result<Planned, PlanError> {
    let Checked {
        alt,
        speed,
        spacing,
        heading,
        turn,
    } = request.checked()?;
    survey::check_holes(&field.outer, &field.holes).map_err(|i| {
        PlanError::Invalid(
            "geometry",
            format!(
                "ring {} (a hole) must lie inside the field's boundary and not overlap another hole",
                i + 1
            ),
        )
    })?;
    let heading = match heading {
        Some(h) => h,
        None => survey::dominant_heading_deg(&field.outer).ok_or(PlanError::NoShape)?,
    };
    let path = survey::lawnmower_with_holes(
        &field.outer,
        &field.holes,
        &SurveyPlan {
            row_spacing_m: spacing,
            heading_deg: heading,
            altitude_m: alt,
            speed_mps: speed,
            overlap: 0.0,
            turnaround_m: turn,
            // A survey's camera covers its swath; a sprayer flies its vine row and no further.
            cover_swath: request.pattern == Pattern::Survey,
        },
    );
    let first = *path.first().ok_or(PlanError::Empty)?;
    let at = |p: LatLon| ((p.lat * 1e7).round() as i32, (p.lon * 1e7).round() as i32);
    let item = |command: u16, frame: u8, params: [f32; 4], p: Option<LatLon>, z: f64| {
        let (x, y) = p.map_or((0, 0), at);
        MissionItem {
            command,
            frame,
            params,
            x,
            y,
            z: z as f32,
            autocontinue: true,
        }
    };
    let mut items = vec![
        // Home: ArduPilot writes its own home here.
        item(16, 0, [0.0; 4], Some(first), 0.0),
        item(22, RELATIVE_ALT, [0.0; 4], Some(first), alt),
        // Ground speed, throttle unchanged.
        item(178, NO_POSITION, [1.0, speed as f32, -1.0, 0.0], None, 0.0),
    ];
    items.extend(
        path.iter()
            .map(|&p| item(16, RELATIVE_ALT, [0.0; 4], Some(p), alt)),
    );
    items.push(item(20, NO_POSITION, [0.0; 4], None, 0.0));
    Ok(Planned {
        items,
        heading_deg: heading,
        spacing_m: spacing,
        passes: path.len() / 2,
        length_m: survey::path_length_m(&path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(pairs: serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
        serde_json::from_value(pairs).expect("a map")
    }

    fn request(spacing: f64) -> PlanRequest {
        PlanRequest {
            alt_m: 30.0,
            speed_mps: 5.0,
            pattern: Pattern::Spray,
            row_spacing_m: Some(spacing),
            footprint_m: None,
            side_overlap: None,
            heading_deg: None,
            turn_outside_m: None,
            mission: None,
        }
    }

    /// A block 200 m east–west, 58.75 m north–south (23.5 row pitches), near Sonoma; the
    /// vines run along it.
    fn block() -> FieldShape {
        let o = LatLon {
            lat: 38.2919,
            lon: -122.458,
        };
        let pts = [(0.0, 0.0), (200.0, 0.0), (200.0, 58.75), (0.0, 58.75)];
        FieldShape {
            outer: pts
                .iter()
                .map(|&(e, n)| survey::from_local_m(o, e, n))
                .collect(),
            holes: Vec::new(),
        }
    }

    #[test]
    fn a_spray_mission_flies_along_the_long_edge_one_pass_per_row() {
        let planned = plan(&block(), &request(2.5)).expect("a plan");
        assert!(
            (planned.heading_deg - 90.0).abs() < 0.1,
            "{}",
            planned.heading_deg
        );
        assert_eq!(planned.passes, 24, "every row under a pass");
        let cmds: Vec<u16> = planned.items.iter().map(|i| i.command).collect();
        assert_eq!(&cmds[..3], &[16, 22, 178]);
        assert_eq!(cmds.last(), Some(&20));
        assert_eq!(planned.items.len(), 3 + 48 + 1);
        assert!(planned.items.iter().all(MissionItem::is_sendable));
        assert_eq!(planned.items[2].params[1], 5.0);
    }

    #[test]
    fn a_survey_spaces_passes_by_footprint_and_overlap() {
        let mut r = request(2.5);
        r.pattern = Pattern::Survey;
        r.footprint_m = Some(20.0);
        r.side_overlap = Some(0.25);
        let planned = plan(&block(), &r).expect("a plan");
        assert_eq!(planned.spacing_m, 15.0);
        assert_eq!(planned.passes, 4);
        r.side_overlap = Some(0.95);
        assert_eq!(
            plan(&block(), &r).unwrap_err(),
            PlanError::Invalid("side_overlap", "between 0 and 0.9".into())
        );
    }

    #[test]
    fn shapes_come_from_polygons_or_geojson_with_holes() {
        let polygon =
            record(json!({ "polygon": [[38.0, -122.0], [38.0, -121.99], [38.01, -121.99]] }));
        assert_eq!(
            shape_of(&polygon).expect("a shape").outer[1],
            LatLon {
                lat: 38.0,
                lon: -121.99
            }
        );
        let geo = record(json!({ "geometry": { "type": "Polygon", "coordinates": [
            [[-122.0, 38.0], [-121.99, 38.0], [-121.99, 38.01], [-122.0, 38.01], [-122.0, 38.0]],
            [[-121.996, 38.004], [-121.994, 38.004], [-121.994, 38.006], [-121.996, 38.006]]
        ] } }));
        let shape = shape_of(&geo).expect("a shape");
        assert_eq!((shape.outer.len(), shape.holes.len()), (5, 1));
        assert_eq!(
            shape.outer[0],
            LatLon {
                lat: 38.0,
                lon: -122.0
            }
        );
        assert_eq!(
            shape_of(&record(json!({ "name": "x" }))),
            Err(PlanError::NoShape)
        );
    }

    /// By the even–odd rule a hole's part outside the boundary, or the overlap of two holes,
    /// would be flown as field: such a shape is refused, naming the hole.
    #[test]
    fn holes_outside_the_boundary_or_overlapping_are_refused() {
        let at = |lat: f64, lon: f64| LatLon { lat, lon };
        let square = |lat: f64, lon: f64, d: f64| {
            vec![
                at(lat, lon),
                at(lat, lon + d),
                at(lat + d, lon + d),
                at(lat + d, lon),
            ]
        };
        let field = |holes: Vec<Vec<LatLon>>| FieldShape {
            outer: square(38.0, -122.0, 0.01),
            holes,
        };
        let mut r = request(10.0);
        r.pattern = Pattern::Survey;
        let pond = square(38.004, -121.996, 0.002);
        assert!(plan(&field(vec![pond.clone()]), &r).is_ok());
        let refused = |holes| match plan(&field(holes), &r) {
            Err(PlanError::Invalid("geometry", why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        // Across the boundary, wholly outside it, and overlapping the pond.
        assert!(refused(vec![square(38.009, -121.996, 0.002)]).starts_with("ring 1 "));
        assert!(refused(vec![square(38.02, -121.996, 0.002)]).starts_with("ring 1 "));
        let why = refused(vec![pond, square(38.005, -121.995, 0.002)]);
        assert!(why.starts_with("ring 2 "), "{why}");
    }
}
