//! Geofences: inclusion polygons (a field and the room around it a vehicle may use) with an
//! optional altitude ceiling, from the `geofences` records, checked on every position of an
//! armed vehicle.
//!
//! A vehicle breaches when it is outside every fence, or inside fences whose ceilings it is
//! above. Fields are a few hundred metres across, so the point-in-polygon test runs on
//! latitude and longitude directly (even–odd, holes included): the error of treating degrees
//! as a plane is far below a GPS's.

use crate::store::Record;
use crate::survey::LatLon;

#[derive(Debug, Clone)]
struct Fence {
    name: String,
    outer: Vec<LatLon>,
    holes: Vec<Vec<LatLon>>,
    ceiling_m: Option<f64>,
}

/// Every geofence the station checks.
#[derive(Debug, Clone, Default)]
pub struct Geofences {
    fences: Vec<Fence>,
}

impl Geofences {
    /// The fences among `records` that have a shape; those without one are skipped (a
    /// geofence record may hold only a ceiling while its polygon is being drawn).
    pub fn from_records(records: &[Record]) -> Geofences {
        let fences = records
            .iter()
            .filter_map(|r| {
                let shape = crate::planner::shape_of(&r.fields).ok()?;
                (shape.outer.len() >= 3).then(|| Fence {
                    name: r
                        .fields
                        .get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or(&r.key)
                        .to_string(),
                    outer: shape.outer,
                    holes: shape.holes,
                    ceiling_m: r.fields.get("ceiling_m").and_then(|c| c.as_f64()),
                })
            })
            .collect();
        Geofences { fences }
    }

    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }

    /// Why a vehicle at `p`, `alt_m` above home, is out of bounds, if it is.
    pub fn breach(&self, p: LatLon, alt_m: f64) -> Option<String> {
        if self.fences.is_empty() {
            return None;
        }
        let inside: Vec<&Fence> = self
            .fences
            .iter()
            .filter(|f| contains(&f.outer, p) && !f.holes.iter().any(|h| contains(h, p)))
            .collect();
        if inside.is_empty() {
            return Some("outside every geofence".into());
        }
        // Within a fence without a ceiling, or under the highest ceiling it is within: in.
        let ceilings: Vec<(f64, &str)> = inside
            .iter()
            .map(|f| f.ceiling_m.map(|c| (c, f.name.as_str())))
            .collect::<Option<_>>()?;
        let (ceiling, name) = ceilings.into_iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
        (alt_m > ceiling)
            .then(|| format!("{alt_m:.0} m above home, over {name}'s {ceiling:.0} m ceiling"))
    }
}

/// Even–odd point in polygon on (lon, lat).
fn contains(ring: &[LatLon], p: LatLon) -> bool {
    let mut inside = false;
    for i in 0..ring.len() {
        let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
        if (a.lat > p.lat) != (b.lat > p.lat)
            && p.lon < a.lon + (p.lat - a.lat) * (b.lon - a.lon) / (b.lat - a.lat)
        {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(key: &str, fields: serde_json::Value) -> Record {
        Record {
            key: key.into(),
            fields: serde_json::from_value(fields).expect("fields"),
        }
    }

    #[test]
    fn outside_every_fence_or_over_the_ceiling_is_a_breach() {
        let fences = Geofences::from_records(&[
            record(
                "north",
                json!({ "name": "North", "ceiling_m": 60,
                "polygon": [[38.0, -122.0], [38.0, -121.99], [38.01, -121.99], [38.01, -122.0]] }),
            ),
            record(
                "pond",
                json!({ "name": "Pond", "geometry": { "type": "Polygon", "coordinates": [
                [[-121.98, 38.0], [-121.97, 38.0], [-121.97, 38.01], [-121.98, 38.01]],
                [[-121.976, 38.004], [-121.974, 38.004], [-121.974, 38.006], [-121.976, 38.006]]
            ] } }),
            ),
            record("ceiling-only", json!({ "ceiling_m": 10 })),
        ]);
        let at = |lat, lon| LatLon { lat, lon };
        assert_eq!(fences.breach(at(38.005, -121.995), 40.0), None);
        assert_eq!(
            fences.breach(at(38.005, -121.995), 75.0).as_deref(),
            Some("75 m above home, over North's 60 m ceiling")
        );
        assert_eq!(
            fences.breach(at(38.005, -121.985), 40.0).as_deref(),
            Some("outside every geofence")
        );
        assert_eq!(
            fences.breach(at(38.002, -121.975), 400.0),
            None,
            "no ceiling over the pond's fence"
        );
        assert_eq!(
            fences.breach(at(38.005, -121.975), 40.0).as_deref(),
            Some("outside every geofence"),
            "in its hole"
        );
        assert_eq!(
            Geofences::default().breach(at(0.0, 0.0), 1e4),
            None,
            "no fences, no breach"
        );
    }
}
