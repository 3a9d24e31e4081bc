//! The geometry sharing agreements need: "only inside this area" (a GeoJSON polygon) and
//! "no more precise than M metres" (positions snapped to a grid).

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("area: {0}")]
pub struct AreaError(String);

/// Polygons, each an outer ring followed by its holes; rings are (lon, lat) as in GeoJSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    polygons: Vec<Vec<Vec<(f64, f64)>>>,
}

impl Area {
    /// Accepts a Polygon or MultiPolygon geometry, a Feature holding one, or a
    /// FeatureCollection of them.
    pub fn parse(text: &str) -> Result<Area, AreaError> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| AreaError(format!("not JSON: {e}")))?;
        let mut polygons = Vec::new();
        collect(&json, &mut polygons)?;
        if polygons.is_empty() {
            return Err(AreaError("holds no polygon".into()));
        }
        Ok(Area { polygons })
    }

    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        self.polygons.iter().any(|rings| {
            let mut rings = rings.iter();
            rings.next().is_some_and(|outer| inside(outer, lon, lat))
                && !rings.any(|hole| inside(hole, lon, lat))
        })
    }
}

fn collect(json: &Value, out: &mut Vec<Vec<Vec<(f64, f64)>>>) -> Result<(), AreaError> {
    match json.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => {
            for f in json
                .get("features")
                .and_then(Value::as_array)
                .ok_or_else(|| AreaError("FeatureCollection without features".into()))?
            {
                collect(f, out)?;
            }
        }
        Some("Feature") => collect(
            json.get("geometry")
                .ok_or_else(|| AreaError("Feature without geometry".into()))?,
            out,
        )?,
        Some("Polygon") => out.push(polygon(json.get("coordinates"))?),
        Some("MultiPolygon") => {
            for p in json
                .get("coordinates")
                .and_then(Value::as_array)
                .ok_or_else(|| AreaError("MultiPolygon without coordinates".into()))?
            {
                out.push(polygon(Some(p))?);
            }
        }
        other => {
            return Err(AreaError(format!(
                "expected a Polygon, MultiPolygon, Feature or FeatureCollection, got {other:?}"
            )))
        }
    }
    Ok(())
}

fn polygon(coordinates: Option<&Value>) -> Result<Vec<Vec<(f64, f64)>>, AreaError> {
    let rings = coordinates
        .and_then(Value::as_array)
        .ok_or_else(|| AreaError("polygon without coordinates".into()))?;
    let mut out = Vec::new();
    for ring in rings {
        let points = ring
            .as_array()
            .ok_or_else(|| AreaError("a ring is not an array".into()))?;
        let mut r = Vec::with_capacity(points.len());
        for p in points {
            let lon = p.get(0).and_then(Value::as_f64);
            let lat = p.get(1).and_then(Value::as_f64);
            match (lon, lat) {
                (Some(lon), Some(lat))
                    if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) =>
                {
                    r.push((lon, lat))
                }
                _ => return Err(AreaError(format!("{p} is not a [lon, lat] position"))),
            }
        }
        if r.len() < 4 {
            return Err(AreaError("a ring needs at least 4 positions".into()));
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(AreaError("polygon without rings".into()));
    }
    Ok(out)
}

/// Even-odd ray casting; fields are small enough that the plane approximation holds.
fn inside(ring: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = ring.len() - 1;
    for i in 0..ring.len() {
        let (xi, yi) = ring[i];
        let (xj, yj) = ring[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

const METRES_PER_DEGREE_LAT: f64 = 111_320.0;

/// Snaps a position to the centre of its cell in a grid of `metres`: whoever receives it
/// learns the cell, not the position.
pub fn coarsen(lat: f64, lon: f64, metres: f64) -> (f64, f64) {
    let lat_step = metres / METRES_PER_DEGREE_LAT;
    let lat_c = ((lat / lat_step).floor() + 0.5) * lat_step;
    // Cells keep their width in metres toward the poles; the row's latitude fixes the scale,
    // so every position in the cell maps to the same centre.
    let lon_step = metres / (METRES_PER_DEGREE_LAT * lat_c.to_radians().cos().max(0.01));
    let lon_c = ((lon / lon_step).floor() + 0.5) * lon_step;
    (lat_c, lon_c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = r#"{"type": "Feature", "properties": {"name": "Block 7"},
        "geometry": {"type": "Polygon", "coordinates": [
            [[-122.46, 38.29], [-122.45, 38.29], [-122.45, 38.30], [-122.46, 38.30], [-122.46, 38.29]],
            [[-122.456, 38.294], [-122.454, 38.294], [-122.454, 38.296], [-122.456, 38.296], [-122.456, 38.294]]
        ]}}"#;

    #[test]
    fn areas_contain_what_is_inside_and_not_their_holes() {
        let area = Area::parse(BLOCK).unwrap();
        assert!(area.contains(38.292, -122.458));
        assert!(!area.contains(38.295, -122.455), "in the hole");
        assert!(!area.contains(38.31, -122.455), "north of the block");
        assert!(Area::parse(r#"{"type": "Point", "coordinates": [0, 0]}"#).is_err());
        assert!(Area::parse(r#"{"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}"#).is_err());
        assert!(Area::parse("not json").is_err());
    }

    #[test]
    fn coarsening_maps_a_cell_to_one_point_within_the_grid() {
        let (lat, lon) = (38.291_234, -122.458_765);
        let (clat, clon) = coarsen(lat, lon, 500.0);
        let moved = ((clat - lat) * METRES_PER_DEGREE_LAT)
            .hypot((clon - lon) * METRES_PER_DEGREE_LAT * lat.to_radians().cos());
        assert!(
            moved <= 500.0 * std::f64::consts::SQRT_2 / 2.0 + 1.0,
            "{moved}"
        );
        assert_eq!(coarsen(lat + 0.000_01, lon - 0.000_01, 500.0), (clat, clon));
    }
}
