//! Field survey planner: lawnmower (boustrophedon) coverage paths over a field polygon.
//!
//! A vineyard block is small (a few hundred metres across), so all geometry is done on a
//! local plane around the field and converted back to WGS84 at the end. The projection is a
//! sinusoidal one on the WGS84 ellipsoid: north is the meridian arc length from the origin,
//! east is the parallel arc length at the point's own latitude. Both are exact to first order,
//! and the only distortion is a shear of about 1.6e-4 rad per kilometre of north–south offset,
//! i.e. centimetres over a field, and the inverse is exact, so a round trip loses nothing.
//!
//! Rows run parallel to the vine rows (`heading_deg`), are spaced across the field, and are
//! clipped to the polygon. A concave field (an L-shaped block, a block with a notch for a
//! building) splits some rows into several segments; rather than flying back and forth over
//! the notch on every row, the rows are grouped into cells (runs of rows whose segments
//! overlap one to one, the boustrophedon cell decomposition) and each cell is flown as its own
//! lawnmower, cells chained nearest-entry first. A rectangle is a single cell, so its rows
//! simply alternate direction.
//!
//! Where a pass ends depends on what it is for. A sprayer's pass is its vine row: it ends
//! where its own line leaves the field. A camera's pass covers a swath half a spacing either
//! side, so it reaches as far as the field does anywhere in that swath (`cover_swath`): every
//! point of the field is then within half a spacing of a pass, and no waypoint is farther
//! outside the field than the room to turn plus half a spacing (property-tested below on
//! random convex and concave fields, with holes).

/// A point in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// Parameters of a lawnmower survey over a field polygon (a vineyard block).
#[derive(Debug, Clone)]
pub struct SurveyPlan {
    /// Distance between adjacent rows, metres (usually the vine row pitch or a multiple).
    pub row_spacing_m: f64,
    /// True bearing of the vine rows, degrees; the rows of the path run along it.
    pub heading_deg: f64,
    /// Flight altitude above home, metres (used by the mission builder, not the geometry).
    pub altitude_m: f64,
    /// Ground speed along the rows, m/s (used by the mission builder, not the geometry).
    pub speed_mps: f64,
    /// Sensor footprint overlap, 0..1: the effective spacing is `row_spacing_m * (1 - overlap)`.
    pub overlap: f64,
    /// Extension past the boundary at each row end, metres (room to turn outside the rows),
    /// can be 0.
    pub turnaround_m: f64,
    /// How far a pass reaches: `true`, as far as the field does anywhere in the pass's swath
    /// (half a spacing either side), so every point of the field is within half a spacing of
    /// a pass, as a camera's footprint needs; `false`, to where the pass's own line leaves the
    /// field, as a sprayer flying one vine row needs (a corner between rows is not sprayed).
    pub cover_swath: bool,
}

/// WGS84 semi-major axis, metres.
const WGS84_A: f64 = 6_378_137.0;
/// WGS84 first eccentricity squared.
const WGS84_E2: f64 = 6.694_379_990_141_3e-3;
/// Mean Earth radius (IUGG), metres, for the great-circle fallback over long distances.
const MEAN_EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Beyond this the local plane is no longer the right tool and `distance_m` / `bearing_deg`
/// switch to great-circle formulas.
const LOCAL_PLANE_LIMIT_M: f64 = 50_000.0;
/// Smallest polygon area (m²) that is still a field rather than a degenerate sliver.
const MIN_AREA_M2: f64 = 1e-6;
/// Row segments shorter than this (a row grazing a vertex) are dropped.
const MIN_SEGMENT_M: f64 = 1e-3;
/// A plan with more rows than this is not a survey anyone can fly; refuse it rather than
/// allocate without bound (e.g. a spacing of a micrometre).
const MAX_ROWS: f64 = 20_000.0;

/// Meridian radius of curvature M and prime-vertical radius N at a latitude (degrees).
fn radii_of_curvature(lat_deg: f64) -> (f64, f64) {
    let s = lat_deg.to_radians().sin();
    let w2 = 1.0 - WGS84_E2 * s * s;
    let n = WGS84_A / w2.sqrt();
    let m = WGS84_A * (1.0 - WGS84_E2) / (w2 * w2.sqrt());
    (m, n)
}

/// Wraps a longitude difference into [-180, 180) so fields across the antimeridian work.
fn wrap_lon_delta(d: f64) -> f64 {
    (d + 180.0).rem_euclid(360.0) - 180.0
}

/// Projects `p` onto the local plane around `origin`: (east, north) in metres.
pub fn to_local_m(origin: LatLon, p: LatLon) -> (f64, f64) {
    let (m, n) = radii_of_curvature(origin.lat);
    let north = (p.lat - origin.lat).to_radians() * m;
    let east = wrap_lon_delta(p.lon - origin.lon).to_radians() * n * p.lat.to_radians().cos();
    (east, north)
}

/// Inverse of [`to_local_m`]: the point `east`, `north` metres from `origin`.
pub fn from_local_m(origin: LatLon, east: f64, north: f64) -> LatLon {
    let (m, n) = radii_of_curvature(origin.lat);
    let lat = origin.lat + (north / m).to_degrees();
    let cos_lat = lat.to_radians().cos();
    let lon = if cos_lat.abs() > 1e-12 {
        origin.lon + (east / (n * cos_lat)).to_degrees()
    } else {
        // At a pole every longitude is the same point.
        origin.lon
    };
    LatLon {
        lat,
        lon: wrap_lon_delta(lon),
    }
}

/// Great-circle distance on the mean sphere, metres.
fn haversine_m(a: LatLon, b: LatLon) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dp = p2 - p1;
    let dl = wrap_lon_delta(b.lon - a.lon).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * MEAN_EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Distance between two points, metres. Ellipsoidal local plane at field scale (exact to
/// millimetres there), great circle beyond 50 km.
pub fn distance_m(a: LatLon, b: LatLon) -> f64 {
    let far = haversine_m(a, b);
    if far > LOCAL_PLANE_LIMIT_M {
        return far;
    }
    let (e, n) = to_local_m(a, b);
    e.hypot(n)
}

/// Initial true bearing from `a` to `b`, degrees in [0, 360). Local plane at field scale,
/// great circle beyond 50 km. 0 when the points coincide.
pub fn bearing_deg(a: LatLon, b: LatLon) -> f64 {
    let deg = if haversine_m(a, b) > LOCAL_PLANE_LIMIT_M {
        let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
        let dl = wrap_lon_delta(b.lon - a.lon).to_radians();
        let y = dl.sin() * p2.cos();
        let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
        y.atan2(x).to_degrees()
    } else {
        let (e, n) = to_local_m(a, b);
        e.atan2(n).to_degrees()
    };
    let b = deg.rem_euclid(360.0);
    // rem_euclid can return exactly 360.0 for tiny negative inputs.
    if b >= 360.0 {
        0.0
    } else {
        b
    }
}

/// Total length of a path in metres.
pub fn path_length_m(path: &[LatLon]) -> f64 {
    path.windows(2).map(|w| distance_m(w[0], w[1])).sum()
}

/// A row segment in the row frame: `v` across the rows, `u0 < u1` along them.
#[derive(Debug, Clone, Copy)]
struct Segment {
    v: f64,
    u0: f64,
    u1: f64,
}

impl Segment {
    fn overlaps(&self, other: &Segment) -> bool {
        self.u0 < other.u1 && other.u0 < self.u1
    }
}

/// Removes non-finite input (returns None), a closing vertex equal to the first (GeoJSON
/// rings are closed) and consecutive duplicates.
pub fn clean_ring(field: &[LatLon]) -> Option<Vec<LatLon>> {
    if field
        .iter()
        .any(|p| !p.lat.is_finite() || !p.lon.is_finite() || p.lat.abs() > 90.0)
    {
        return None;
    }
    let mut ring: Vec<LatLon> = Vec::with_capacity(field.len());
    for &p in field {
        if ring.last() != Some(&p) {
            ring.push(p);
        }
    }
    while ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    Some(ring)
}

/// Shoelace area of a ring in the plane (signed).
fn signed_area(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len();
    (0..n)
        .map(|i| {
            let (x0, y0) = pts[i];
            let (x1, y1) = pts[(i + 1) % n];
            x0 * y1 - x1 * y0
        })
        .sum::<f64>()
        / 2.0
}

/// Even–odd point in polygon, in the plane.
fn inside_ring(ring: &[(f64, f64)], (x, y): (f64, f64)) -> bool {
    let mut inside = false;
    for i in 0..ring.len() {
        let (xa, ya) = ring[i];
        let (xb, yb) = ring[(i + 1) % ring.len()];
        if (ya > y) != (yb > y) && x < xa + (y - ya) * (xb - xa) / (yb - ya) {
            inside = !inside;
        }
    }
    inside
}

/// Whether an edge of `a` properly crosses an edge of `b` (touching is not crossing).
fn rings_cross(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    let side = |(xa, ya): (f64, f64), (xb, yb): (f64, f64), (x, y): (f64, f64)| {
        ((xb - xa) * (y - ya) - (yb - ya) * (x - xa)).signum()
    };
    let edges = |r: &[(f64, f64)]| {
        (0..r.len())
            .map(|i| (r[i], r[(i + 1) % r.len()]))
            .collect::<Vec<_>>()
    };
    let (ea, eb) = (edges(a), edges(b));
    ea.iter().any(|&(p, q)| {
        eb.iter().any(|&(r, s)| {
            side(p, q, r) * side(p, q, s) < 0.0 && side(r, s, p) * side(r, s, q) < 0.0
        })
    })
}

/// Checks what the even–odd rule of the planner takes for granted and GeoJSON requires of a
/// polygon: every hole lies inside the boundary and no two holes overlap. Were it not so, the
/// part of a hole outside the boundary, or where two holes overlap, would count as field and
/// be flown. Returns the index of the first hole that breaks it.
pub fn check_holes(outer: &[LatLon], holes: &[Vec<LatLon>]) -> Result<(), usize> {
    let Some(origin) = outer.first().copied() else {
        return Ok(());
    };
    let local = |r: &[LatLon]| -> Vec<(f64, f64)> {
        clean_ring(r)
            .unwrap_or_default()
            .iter()
            .map(|&p| to_local_m(origin, p))
            .collect()
    };
    let outer = local(outer);
    let holes: Vec<Vec<(f64, f64)>> = holes.iter().map(|h| local(h)).collect();
    for (i, hole) in holes.iter().enumerate() {
        let outside = hole.iter().any(|&p| !inside_ring(&outer, p));
        let overlaps = holes[..i].iter().any(|other| {
            rings_cross(hole, other)
                || hole.iter().any(|&p| inside_ring(other, p))
                || other.iter().any(|&p| inside_ring(hole, p))
        });
        if outside || rings_cross(hole, &outer) || overlaps {
            return Err(i);
        }
    }
    Ok(())
}

/// The inside stretches of the line `v = const` through the polygon (row frame), by the
/// even–odd rule. The half-open crossing test (`> v` on one end only) counts a vertex lying
/// exactly on the line once per side, so crossings always pair up.
///
/// `rings` are the outer boundary and any holes: by the even–odd rule a hole's edges simply
/// cut the row again, so a row across a pond or a shed becomes two segments.
fn clip_row(rings: &[Vec<(f64, f64)>], v: f64) -> Vec<Segment> {
    let mut us: Vec<f64> = Vec::new();
    for ring in rings {
        let n = ring.len();
        for i in 0..n {
            let (ua, va) = ring[i];
            let (ub, vb) = ring[(i + 1) % n];
            if (va > v) != (vb > v) {
                us.push(ua + (v - va) * (ub - ua) / (vb - va));
            }
        }
    }
    us.sort_by(f64::total_cmp);
    us.chunks_exact(2)
        .filter(|c| c[1] - c[0] >= MIN_SEGMENT_M)
        .map(|c| Segment {
            v,
            u0: c[0],
            u1: c[1],
        })
        .collect()
}

/// The stretches along `u` a pass at `v` must fly so that its swath, `v ± half`, covers the
/// field: the projection onto `u` of the part of the field inside the band. Between two
/// consecutive levels where a vertex lies (or the band's edges), the edges crossing the band
/// are straight and do not cross each other, so the field there is a set of trapezoids, paired
/// by the even–odd rule; the union of their `u` extents is the answer.
fn clip_band(rings: &[Vec<(f64, f64)>], v: f64, half: f64) -> Vec<Segment> {
    let (lo, hi) = (v - half, v + half);
    let mut levels: Vec<f64> = rings
        .iter()
        .flatten()
        .map(|p| p.1)
        .filter(|&pv| pv > lo && pv < hi)
        .chain([lo, hi])
        .collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for w in levels.windows(2) {
        let (a, b) = (w[0], w[1]);
        let mid = (a + b) / 2.0;
        // (u at the middle, u at a, u at b) of each edge spanning [a, b].
        let mut crossing: Vec<(f64, f64, f64)> = Vec::new();
        for ring in rings {
            let n = ring.len();
            for i in 0..n {
                let (ua, va) = ring[i];
                let (ub, vb) = ring[(i + 1) % n];
                if va.min(vb) <= a && va.max(vb) >= b && va != vb {
                    let at = |level: f64| ua + (level - va) * (ub - ua) / (vb - va);
                    crossing.push((at(mid), at(a), at(b)));
                }
            }
        }
        crossing.sort_by(|x, y| x.0.total_cmp(&y.0));
        for pair in crossing.chunks_exact(2) {
            let (left, right) = (pair[0], pair[1]);
            spans.push((left.1.min(left.2), right.1.max(right.2)));
        }
    }
    spans.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (u0, u1) in spans {
        match merged.last_mut() {
            Some(last) if u0 <= last.1 => last.1 = last.1.max(u1),
            _ => merged.push((u0, u1)),
        }
    }
    merged
        .into_iter()
        .filter(|(u0, u1)| u1 - u0 >= MIN_SEGMENT_M)
        .map(|(u0, u1)| Segment { v, u0, u1 })
        .collect()
}

/// Groups row segments into cells: a segment continues the cell of the segment in the
/// previous row when the two overlap each other and nothing else (no split or merge of the
/// free space between them), otherwise it opens a new cell.
fn decompose_cells(rows: &[Vec<Segment>]) -> Vec<Vec<Segment>> {
    let mut cells: Vec<Vec<Segment>> = Vec::new();
    let mut prev: Vec<(Segment, usize)> = Vec::new();
    for row in rows {
        let mut cur: Vec<(Segment, usize)> = Vec::with_capacity(row.len());
        for seg in row {
            let above: Vec<usize> = (0..prev.len())
                .filter(|&j| prev[j].0.overlaps(seg))
                .collect();
            let continued = match above.as_slice() {
                [j] if row.iter().filter(|s| s.overlaps(&prev[*j].0)).count() == 1 => {
                    Some(prev[*j].1)
                }
                _ => None,
            };
            let cell = match continued {
                Some(c) => {
                    cells[c].push(*seg);
                    c
                }
                None => {
                    cells.push(vec![*seg]);
                    cells.len() - 1
                }
            };
            cur.push((*seg, cell));
        }
        prev = cur;
    }
    cells
}

/// One way of flying a cell: from its first or last row, first row forward (+u) or not.
#[derive(Debug, Clone, Copy)]
struct Entry {
    from_first_row: bool,
    first_forward: bool,
}

/// Ordered (u, v) waypoints for flying `cell` with `entry`, each row extended by `ext`.
fn fly_cell(cell: &[Segment], entry: Entry, ext: f64) -> Vec<(f64, f64)> {
    let mut pts = Vec::with_capacity(cell.len() * 2);
    let order: Box<dyn Iterator<Item = &Segment>> = if entry.from_first_row {
        Box::new(cell.iter())
    } else {
        Box::new(cell.iter().rev())
    };
    let mut forward = entry.first_forward;
    for s in order {
        if forward {
            pts.push((s.u0 - ext, s.v));
            pts.push((s.u1 + ext, s.v));
        } else {
            pts.push((s.u1 + ext, s.v));
            pts.push((s.u0 - ext, s.v));
        }
        forward = !forward;
    }
    pts
}

/// Lawnmower path: rows parallel to `heading_deg` (true bearing of the vine rows), spaced
/// across the polygon, alternating direction, clipped to the polygon (concave polygons: a
/// row crossing a notch becomes several segments, flown cell by cell, boustrophedon within
/// each cell). Returns the ordered waypoints, two per row segment (start, end), each
/// extended by `turnaround_m` past the boundary.
///
/// Rows are centred across the field: `ceil(width / spacing)` rows, so the outermost rows
/// sit half a spacing or less inside the edges and the swaths cover the block edge to edge.
///
/// Empty if the polygon has fewer than 3 distinct points, zero area or non-finite
/// coordinates, or if the plan is unusable (spacing ≤ 0, overlap outside [0, 1), negative
/// turnaround, non-finite numbers, or more than 20 000 rows).
pub fn lawnmower(field: &[LatLon], plan: &SurveyPlan) -> Vec<LatLon> {
    lawnmower_with_holes(field, &[], plan)
}

/// [`lawnmower`] over a field with holes (a pond, a shed, a block left unplanted): rows stop
/// at each hole's edge and go on past it; the stretches either side are cells of their own.
/// A hole with fewer than 3 distinct points or non-finite coordinates is ignored; the holes
/// must pass [`check_holes`] (the planner refuses a field whose holes do not).
pub fn lawnmower_with_holes(
    field: &[LatLon],
    holes: &[Vec<LatLon>],
    plan: &SurveyPlan,
) -> Vec<LatLon> {
    let Some(ring) = clean_ring(field) else {
        return Vec::new();
    };
    if ring.len() < 3 {
        return Vec::new();
    }
    let spacing = plan.row_spacing_m * (1.0 - plan.overlap);
    let plan_ok = spacing.is_finite()
        && spacing > 0.0
        && (0.0..1.0).contains(&plan.overlap)
        && plan.heading_deg.is_finite()
        && plan.turnaround_m.is_finite()
        && plan.turnaround_m >= 0.0;
    if !plan_ok {
        return Vec::new();
    }

    // Project around the vertex mean, which keeps the shear of the projection minimal.
    let k = ring.len() as f64;
    let origin = LatLon {
        lat: ring.iter().map(|p| p.lat).sum::<f64>() / k,
        lon: ring[0].lon
            + ring
                .iter()
                .map(|p| wrap_lon_delta(p.lon - ring[0].lon))
                .sum::<f64>()
                / k,
    };
    let local: Vec<(f64, f64)> = ring.iter().map(|&p| to_local_m(origin, p)).collect();
    if signed_area(&local).abs() < MIN_AREA_M2 {
        return Vec::new();
    }

    // Row frame: u along the heading, v to its right. The rotation is its own inverse.
    let (s, c) = plan.heading_deg.to_radians().sin_cos();
    let to_uv = |(e, n): (f64, f64)| (e * s + n * c, e * c - n * s);
    let from_uv = |(u, v): (f64, f64)| (u * s + v * c, u * c - v * s);
    let poly_uv: Vec<(f64, f64)> = local.iter().map(|&p| to_uv(p)).collect();
    let mut rings = vec![poly_uv.clone()];
    rings.extend(
        holes
            .iter()
            .filter_map(|h| clean_ring(h))
            .filter(|h| h.len() >= 3)
            .map(|h| h.iter().map(|&p| to_uv(to_local_m(origin, p))).collect()),
    );

    let vmin = poly_uv.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let vmax = poly_uv
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let width = vmax - vmin;
    // The tolerance keeps a 60.000001 m wide field at 5 m spacing at 12 rows, not 13 rows
    // of which the outer two only graze the corners.
    let n_rows = (width / spacing - 1e-6).ceil().max(1.0);
    if !n_rows.is_finite() || n_rows > MAX_ROWS {
        return Vec::new();
    }
    let n_rows = n_rows as usize;
    let first_v = vmin + (width - (n_rows as f64 - 1.0) * spacing) / 2.0;

    let rows: Vec<Vec<Segment>> = (0..n_rows)
        .map(|i| {
            let v = first_v + i as f64 * spacing;
            if plan.cover_swath {
                clip_band(&rings, v, spacing / 2.0)
            } else {
                clip_row(&rings, v)
            }
        })
        .filter(|r| !r.is_empty())
        .collect();
    let cells = decompose_cells(&rows);

    // Chain the cells greedily: start with the first cell along its first row, then always
    // enter the unvisited cell whose entry point is nearest the current position.
    let mut visited = vec![false; cells.len()];
    let mut uv_path: Vec<(f64, f64)> = Vec::new();
    let mut next = (
        0usize,
        Entry {
            from_first_row: true,
            first_forward: true,
        },
    );
    for _ in 0..cells.len() {
        let (idx, entry) = next;
        visited[idx] = true;
        uv_path.extend(fly_cell(&cells[idx], entry, plan.turnaround_m));
        let Some(&here) = uv_path.last() else {
            break;
        };
        let mut best: Option<(f64, usize, Entry)> = None;
        for (j, cell) in cells.iter().enumerate().filter(|(j, _)| !visited[*j]) {
            let (Some(first), Some(last)) = (cell.first(), cell.last()) else {
                continue;
            };
            for (row, from_first_row) in [(first, true), (last, false)] {
                for first_forward in [true, false] {
                    let u = if first_forward {
                        row.u0 - plan.turnaround_m
                    } else {
                        row.u1 + plan.turnaround_m
                    };
                    let d = (u - here.0).hypot(row.v - here.1);
                    if best.is_none_or(|(bd, _, _)| d < bd) {
                        best = Some((
                            d,
                            j,
                            Entry {
                                from_first_row,
                                first_forward,
                            },
                        ));
                    }
                }
            }
        }
        match best {
            Some((_, j, e)) => next = (j, e),
            None => break,
        }
    }

    uv_path
        .into_iter()
        .map(|p| {
            let (e, n) = from_uv(p);
            from_local_m(origin, e, n)
        })
        .collect()
}

/// The bearing (0–180°) of the field's longest edge: vines are planted along a block's long
/// side, so this is the default direction of the passes. `None` for fewer than two distinct
/// points.
pub fn dominant_heading_deg(field: &[LatLon]) -> Option<f64> {
    let ring = clean_ring(field)?;
    let n = ring.len();
    (0..n)
        .filter(|&i| n >= 2 && ring[i] != ring[(i + 1) % n])
        .map(|i| (ring[i], ring[(i + 1) % n]))
        .max_by(|a, b| distance_m(a.0, a.1).total_cmp(&distance_m(b.0, b.1)))
        .map(|(a, b)| bearing_deg(a, b).rem_euclid(180.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vineyard near Bordeaux.
    const ORIGIN: LatLon = LatLon {
        lat: 44.8378,
        lon: -0.5792,
    };

    fn poly(origin: LatLon, pts: &[(f64, f64)]) -> Vec<LatLon> {
        pts.iter()
            .map(|&(e, n)| from_local_m(origin, e, n))
            .collect()
    }

    fn plan(spacing: f64, heading: f64, turnaround: f64) -> SurveyPlan {
        SurveyPlan {
            row_spacing_m: spacing,
            heading_deg: heading,
            altitude_m: 30.0,
            speed_mps: 6.0,
            overlap: 0.0,
            turnaround_m: turnaround,
            cover_swath: false,
        }
    }

    /// Even–odd point in polygon in local metres around `origin`.
    fn inside(origin: LatLon, field: &[LatLon], p: LatLon) -> bool {
        let pts: Vec<(f64, f64)> = field.iter().map(|&q| to_local_m(origin, q)).collect();
        inside_ring(&pts, to_local_m(origin, p))
    }

    /// Distance from a point to the polygon boundary, metres.
    fn boundary_distance(origin: LatLon, field: &[LatLon], p: LatLon) -> f64 {
        let pts: Vec<(f64, f64)> = field.iter().map(|&q| to_local_m(origin, q)).collect();
        to_ring_distance(&pts, to_local_m(origin, p))
    }

    fn angle_diff(a: f64, b: f64) -> f64 {
        let d = (a - b).rem_euclid(360.0);
        d.min(360.0 - d)
    }

    fn assert_rows_parallel_and_alternating(path: &[LatLon], heading: f64) {
        assert_eq!(path.len() % 2, 0);
        let bearings: Vec<f64> = path
            .chunks_exact(2)
            .map(|r| bearing_deg(r[0], r[1]))
            .collect();
        for b in &bearings {
            let off = angle_diff(*b, heading).min(angle_diff(*b, heading + 180.0));
            assert!(off < 0.1, "row bearing {b} vs heading {heading}");
        }
        for w in bearings.windows(2) {
            let d = angle_diff(w[0], w[1]);
            assert!((d - 180.0).abs() < 0.1, "rows {w:?} do not alternate");
        }
    }

    #[test]
    fn rectangle_rows_along_long_side() {
        // 100 m east–west by 60 m north–south; the rows run east–west.
        let field = poly(
            ORIGIN,
            &[(-50.0, -30.0), (50.0, -30.0), (50.0, 30.0), (-50.0, 30.0)],
        );
        let path = lawnmower(&field, &plan(5.0, 90.0, 0.0));
        let rows = path.len() / 2;
        assert!(rows == 12 || rows == 13, "{rows} rows");
        for p in &path {
            assert!(
                inside(ORIGIN, &field, *p) || boundary_distance(ORIGIN, &field, *p) < 1e-3,
                "{p:?} outside"
            );
        }
        assert_rows_parallel_and_alternating(&path, 90.0);
        // Each row spans the field and consecutive rows are one spacing apart.
        for r in path.chunks_exact(2) {
            assert!((distance_m(r[0], r[1]) - 100.0).abs() < 0.01);
        }
        for w in path.chunks_exact(2).collect::<Vec<_>>().windows(2) {
            let (_, n0) = to_local_m(ORIGIN, w[0][0]);
            let (_, n1) = to_local_m(ORIGIN, w[1][0]);
            assert!(((n1 - n0).abs() - 5.0).abs() < 0.01);
        }
        // 12 rows of 100 m plus 11 crossings of 5 m.
        assert!((path_length_m(&path) - (12.0 * 100.0 + 11.0 * 5.0)).abs() < 0.1);
    }

    #[test]
    fn turnaround_extends_rows_past_the_boundary() {
        let field = poly(
            ORIGIN,
            &[(-50.0, -30.0), (50.0, -30.0), (50.0, 30.0), (-50.0, 30.0)],
        );
        let path = lawnmower(&field, &plan(5.0, 90.0, 4.0));
        assert!(!path.is_empty());
        for p in &path {
            let d = boundary_distance(ORIGIN, &field, *p);
            assert!(
                inside(ORIGIN, &field, *p) || d <= 4.0 + 1e-3,
                "{p:?} {d} m out"
            );
            // Row ends are exactly the turnaround beyond the east or west edge.
            let (e, _) = to_local_m(ORIGIN, *p);
            assert!((e.abs() - 54.0).abs() < 0.01, "east {e}");
        }
        for r in path.chunks_exact(2) {
            assert!((distance_m(r[0], r[1]) - 108.0).abs() < 0.01);
        }
        assert_rows_parallel_and_alternating(&path, 90.0);
    }

    #[test]
    fn rotated_rectangle() {
        // Long side (100 m) along bearing 37°, short side 60 m.
        let h = 37.0_f64.to_radians();
        let along = (h.sin(), h.cos());
        let across = (h.cos(), -h.sin());
        let corner = |a: f64, b: f64| (a * along.0 + b * across.0, a * along.1 + b * across.1);
        let field = poly(
            ORIGIN,
            &[
                corner(-50.0, -30.0),
                corner(50.0, -30.0),
                corner(50.0, 30.0),
                corner(-50.0, 30.0),
            ],
        );
        let path = lawnmower(&field, &plan(5.0, 37.0, 0.0));
        let rows = path.len() / 2;
        assert!(rows == 12 || rows == 13, "{rows} rows");
        for p in &path {
            assert!(
                inside(ORIGIN, &field, *p) || boundary_distance(ORIGIN, &field, *p) < 1e-3,
                "{p:?} outside"
            );
        }
        assert_rows_parallel_and_alternating(&path, 37.0);
        for r in path.chunks_exact(2) {
            assert!((distance_m(r[0], r[1]) - 100.0).abs() < 0.01);
        }
    }

    #[test]
    fn overlap_shrinks_spacing_and_closed_ring_is_accepted() {
        let mut field = poly(
            ORIGIN,
            &[(-50.0, -30.0), (50.0, -30.0), (50.0, 30.0), (-50.0, 30.0)],
        );
        let mut p = plan(10.0, 90.0, 0.0);
        p.overlap = 0.5;
        let open = lawnmower(&field, &p);
        assert_eq!(open.len() / 2, 12);
        field.push(field[0]);
        assert_eq!(lawnmower(&field, &p), open);
    }

    #[test]
    fn l_shape_never_flies_a_row_over_the_notch() {
        // An L: 100 × 100 with the north-east 60 × 60 quarter missing.
        let field = poly(
            ORIGIN,
            &[
                (0.0, 0.0),
                (100.0, 0.0),
                (100.0, 40.0),
                (40.0, 40.0),
                (40.0, 100.0),
                (0.0, 100.0),
            ],
        );
        for heading in [0.0, 45.0, 90.0, 123.0, 160.0] {
            let path = lawnmower(&field, &plan(5.0, heading, 0.0));
            assert!(
                path.len() >= 2 * 10,
                "heading {heading}: {} points",
                path.len()
            );
            for r in path.chunks_exact(2) {
                let mid = LatLon {
                    lat: (r[0].lat + r[1].lat) / 2.0,
                    lon: (r[0].lon + r[1].lon) / 2.0,
                };
                assert!(
                    inside(ORIGIN, &field, mid),
                    "heading {heading}: row {r:?} crosses the notch"
                );
                let off = angle_diff(bearing_deg(r[0], r[1]), heading)
                    .min(angle_diff(bearing_deg(r[0], r[1]), heading + 180.0));
                assert!(off < 0.1);
            }
            // Both arms are covered: some row ends in each.
            let ends: Vec<(f64, f64)> = path.iter().map(|p| to_local_m(ORIGIN, *p)).collect();
            assert!(ends.iter().any(|m| m.0 > 60.0 && m.1 < 40.0), "east arm");
            assert!(ends.iter().any(|m| m.0 < 40.0 && m.1 > 60.0), "north arm");
        }
    }

    #[test]
    fn u_shape_flies_each_arm_as_its_own_cell() {
        // A U open to the north: rows along north cross the gap only between cells.
        let field = poly(
            ORIGIN,
            &[
                (0.0, 0.0),
                (90.0, 0.0),
                (90.0, 80.0),
                (60.0, 80.0),
                (60.0, 30.0),
                (30.0, 30.0),
                (30.0, 80.0),
                (0.0, 80.0),
            ],
        );
        let path = lawnmower(&field, &plan(5.0, 90.0, 0.0));
        // Count transits (from one row end to the next row start) longer than 2 spacings:
        // cell changes only, not one per row.
        let long_transits = path
            .chunks_exact(2)
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| distance_m(w[0][1], w[1][0]) > 10.0)
            .count();
        assert!(long_transits <= 3, "{long_transits} long transits");
        for r in path.chunks_exact(2) {
            let mid = LatLon {
                lat: (r[0].lat + r[1].lat) / 2.0,
                lon: (r[0].lon + r[1].lon) / 2.0,
            };
            assert!(inside(ORIGIN, &field, mid));
        }
    }

    #[test]
    fn degenerate_inputs_are_empty() {
        let p = plan(5.0, 0.0, 0.0);
        assert!(lawnmower(&[], &p).is_empty());
        let two = poly(ORIGIN, &[(0.0, 0.0), (10.0, 0.0)]);
        assert!(lawnmower(&two, &p).is_empty());
        let collinear = poly(ORIGIN, &[(0.0, 0.0), (10.0, 0.0), (20.0, 0.0)]);
        assert!(lawnmower(&collinear, &p).is_empty());
        let same = vec![ORIGIN; 5];
        assert!(lawnmower(&same, &p).is_empty());
        let square = poly(
            ORIGIN,
            &[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)],
        );
        assert!(lawnmower(&square, &plan(0.0, 0.0, 0.0)).is_empty());
        assert!(lawnmower(&square, &plan(-5.0, 0.0, 0.0)).is_empty());
        assert!(lawnmower(&square, &plan(f64::NAN, 0.0, 0.0)).is_empty());
        assert!(lawnmower(&square, &plan(5.0, f64::INFINITY, 0.0)).is_empty());
        assert!(lawnmower(&square, &plan(1e-9, 0.0, 0.0)).is_empty());
        let mut full = plan(5.0, 0.0, 0.0);
        full.overlap = 1.0;
        assert!(lawnmower(&square, &full).is_empty());
        let mut nan_field = square.clone();
        nan_field[1].lat = f64::NAN;
        assert!(lawnmower(&nan_field, &p).is_empty());
        // A field narrower than one spacing still gets one centred row.
        let strip = poly(ORIGIN, &[(0.0, 0.0), (2.0, 0.0), (2.0, 50.0), (0.0, 50.0)]);
        let path = lawnmower(&strip, &p);
        assert_eq!(path.len(), 2);
        assert!((to_local_m(ORIGIN, path[0]).0 - 1.0).abs() < 1e-3);
    }

    #[test]
    fn local_round_trip_within_a_millimetre() {
        let origins = [
            ORIGIN,
            LatLon {
                lat: -33.9,
                lon: 18.8,
            },
            LatLon {
                lat: 61.2,
                lon: -149.9,
            },
            LatLon {
                lat: 0.0,
                lon: 179.999,
            },
            LatLon {
                lat: 38.5,
                lon: -122.4,
            },
        ];
        for o in origins {
            for &(e, n) in &[
                (0.0, 0.0),
                (1.0, -1.0),
                (123.4, 567.8),
                (-2500.0, 4000.0),
                (5000.0, -5000.0),
            ] {
                let p = from_local_m(o, e, n);
                let (e2, n2) = to_local_m(o, p);
                assert!(
                    (e - e2).abs() < 1e-3 && (n - n2).abs() < 1e-3,
                    "{o:?} {e} {n}"
                );
                // And the local metres are real metres: distance matches the offset.
                assert!((distance_m(o, p) - e.hypot(n)).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn distance_and_bearing() {
        let north = from_local_m(ORIGIN, 0.0, 100.0);
        let east = from_local_m(ORIGIN, 100.0, 0.0);
        let sw = from_local_m(ORIGIN, -300.0, -400.0);
        assert!((distance_m(ORIGIN, north) - 100.0).abs() < 1e-6);
        assert!((bearing_deg(ORIGIN, north) - 0.0).abs() < 1e-6);
        assert!((bearing_deg(ORIGIN, east) - 90.0).abs() < 1e-6);
        assert!((distance_m(ORIGIN, sw) - 500.0).abs() < 1e-6);
        let b = bearing_deg(ORIGIN, sw);
        assert!((b - (180.0 + 36.869_897_6)).abs() < 1e-4, "{b}");
        assert!(bearing_deg(ORIGIN, ORIGIN) < 360.0);
        // One degree of latitude, great-circle branch (sphere: 111.195 km).
        let far = LatLon {
            lat: ORIGIN.lat + 1.0,
            lon: ORIGIN.lon,
        };
        assert!((distance_m(ORIGIN, far) - 111_195.0).abs() < 5.0);
        assert!(bearing_deg(ORIGIN, far) < 1e-9 || bearing_deg(ORIGIN, far) > 359.999);
        // A metre of latitude on the ellipsoid at 45° is a bit less than on the sphere.
        let (_, n) = to_local_m(
            ORIGIN,
            LatLon {
                lat: ORIGIN.lat + 0.001,
                lon: ORIGIN.lon,
            },
        );
        assert!((n - 111.13).abs() < 0.02, "{n}");
        assert_eq!(path_length_m(&[]), 0.0);
        assert_eq!(path_length_m(&[ORIGIN]), 0.0);
    }

    /// A random simple field: a star-shaped polygon (vertices at increasing angles around a
    /// centre, each at its own distance), so convex and concave blocks both come up. `gaps`
    /// are the angles between vertices, relative; none is half the circle, so the centre is
    /// inside.
    fn star(radii: &[f64], gaps: &[f64]) -> Vec<(f64, f64)> {
        let total: f64 = gaps.iter().sum();
        let mut angle = 0.0;
        radii
            .iter()
            .zip(gaps)
            .map(|(r, g)| {
                angle += g / total * std::f64::consts::TAU;
                (r * angle.cos(), r * angle.sin())
            })
            .collect()
    }

    fn to_seg_distance((x, y): (f64, f64), (xa, ya): (f64, f64), (xb, yb): (f64, f64)) -> f64 {
        let (dx, dy) = (xb - xa, yb - ya);
        let len2 = dx * dx + dy * dy;
        let t = if len2 == 0.0 {
            0.0
        } else {
            (((x - xa) * dx + (y - ya) * dy) / len2).clamp(0.0, 1.0)
        };
        (x - xa - t * dx).hypot(y - ya - t * dy)
    }

    fn to_ring_distance(pts: &[(f64, f64)], p: (f64, f64)) -> f64 {
        (0..pts.len())
            .map(|i| to_seg_distance(p, pts[i], pts[(i + 1) % pts.len()]))
            .fold(f64::INFINITY, f64::min)
    }

    /// A comb: teeth `(width, gap after it, height)` standing on a headland `headland` deep,
    /// centred on the origin and turned by `turn` radians. Its gaps reach down to the
    /// headland, so from no point inside can every tooth be seen.
    fn comb(teeth: &[(f64, f64, f64)], headland: f64, turn: f64) -> Vec<(f64, f64)> {
        let mut top = Vec::new();
        let mut x = 0.0;
        for (i, &(width, gap, height)) in teeth.iter().enumerate() {
            top.push((x, height));
            top.push((x + width, height));
            x += width;
            if i + 1 < teeth.len() {
                top.push((x, headland));
                top.push((x + gap, headland));
                x += gap;
            }
        }
        let mut ring = vec![(0.0, 0.0), (x, 0.0)];
        ring.extend(top.into_iter().rev());
        let (cx, cy) = (x / 2.0, headland);
        let (sin, cos) = turn.sin_cos();
        ring.into_iter()
            .map(|(px, py)| {
                let (px, py) = (px - cx, py - cy);
                (px * cos - py * sin, px * sin + py * cos)
            })
            .collect()
    }

    /// Every point of the field `outer` (outside its hole, a square of half-side `hole` about
    /// the origin when that lies inside) is within half a spacing of a pass, and no waypoint
    /// is farther outside the field than the turn margin: the room to turn plus half a
    /// spacing (a pass reaches as far as the field does within its swath). `samples` are
    /// points in the field's bounding circle, as fractions of its radius.
    fn covers_within_its_margin(
        outer: &[(f64, f64)],
        hole: Option<f64>,
        (spacing, heading, turnaround): (f64, f64, f64),
        samples: &[(f64, f64)],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        // A field's holes lie inside it (the planner refuses others).
        let field = poly(ORIGIN, outer);
        let hole: Option<Vec<(f64, f64)>> = hole
            .map(|r| vec![(-r, -r), (r, -r), (r, r), (-r, r)])
            .filter(|h| check_holes(&field, &[poly(ORIGIN, h)]).is_ok());
        let holes: Vec<Vec<LatLon>> = hole.iter().map(|h| poly(ORIGIN, h)).collect();
        let mut survey = plan(spacing, heading, turnaround);
        survey.cover_swath = true;
        let path = lawnmower_with_holes(&field, &holes, &survey);
        proptest::prop_assert!(path.len() >= 2 && path.len().is_multiple_of(2));
        let local: Vec<(f64, f64)> = path.iter().map(|&p| to_local_m(ORIGIN, p)).collect();
        let passes: Vec<((f64, f64), (f64, f64))> =
            local.chunks_exact(2).map(|w| (w[0], w[1])).collect();
        // Projection and rounding: centimetres.
        const SLACK: f64 = 0.05;
        let reach = outer.iter().map(|&(x, y)| x.hypot(y)).fold(0.0, f64::max);
        for &(sx, sy) in samples {
            let p = (sx * reach, sy * reach);
            let in_hole = hole.as_ref().is_some_and(|h| inside_ring(h, p));
            if !inside_ring(outer, p) || in_hole {
                continue;
            }
            let nearest = passes
                .iter()
                .map(|&(a, b)| to_seg_distance(p, a, b))
                .fold(f64::INFINITY, f64::min);
            proptest::prop_assert!(
                nearest <= spacing / 2.0 + SLACK,
                "{p:?} is {nearest:.2} m from the nearest pass (spacing {spacing:.2})"
            );
        }
        let margin = turnaround + spacing / 2.0 + SLACK;
        for &w in &local {
            if !inside_ring(outer, w) {
                let out = to_ring_distance(outer, w);
                proptest::prop_assert!(
                    out <= margin,
                    "waypoint {w:?} is {out:.2} m outside (margin {margin:.2})"
                );
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Every point of the field (outside its hole) is within half a spacing of a pass, and
        /// no waypoint is farther outside the field than the turn margin: the room to turn
        /// plus half a spacing (a pass reaches as far as the field does within its swath).
        #[test]
        fn a_survey_covers_the_field_within_half_a_spacing_and_stays_within_its_margin(
            radii in proptest::collection::vec(40.0f64..250.0, 3..12),
            gaps in proptest::collection::vec(0.6f64..1.0, 12),
            spacing in 2.0f64..30.0,
            heading in 0.0f64..180.0,
            turnaround in 0.0f64..15.0,
            hole in proptest::option::of(5.0f64..30.0),
            samples in proptest::collection::vec((-1.0f64..1.0, -1.0f64..1.0), 300),
        ) {
            let outer = star(&radii, &gaps[..radii.len()]);
            covers_within_its_margin(&outer, hole, (spacing, heading, turnaround), &samples)?;
        }

        /// The same for fields no point of which sees all of them: combs of blocks on a
        /// headland, their gaps cut deep, turned to any angle.
        #[test]
        fn a_survey_of_a_comb_shaped_field_covers_it_within_half_a_spacing(
            teeth in proptest::collection::vec((20.0f64..80.0, 10.0f64..60.0, 60.0f64..250.0), 2..6),
            headland in 10.0f64..40.0,
            turn in 0.0f64..std::f64::consts::PI,
            spacing in 2.0f64..30.0,
            heading in 0.0f64..180.0,
            turnaround in 0.0f64..15.0,
            samples in proptest::collection::vec((-1.0f64..1.0, -1.0f64..1.0), 300),
        ) {
            let outer = comb(&teeth, headland, turn);
            covers_within_its_margin(&outer, None, (spacing, heading, turnaround), &samples)?;
        }

        /// A spray pass is its vine row: it never leaves the field by more than the room to
        /// turn, and every row through the field is flown where it is inside it.
        #[test]
        fn a_spray_pass_ends_where_its_row_leaves_the_field(
            radii in proptest::collection::vec(40.0f64..250.0, 3..12),
            gaps in proptest::collection::vec(0.6f64..1.0, 12),
            spacing in 2.0f64..30.0,
            heading in 0.0f64..180.0,
            turnaround in 0.0f64..15.0,
        ) {
            let outer = star(&radii, &gaps[..radii.len()]);
            let path = lawnmower(&poly(ORIGIN, &outer), &plan(spacing, heading, turnaround));
            proptest::prop_assert!(!path.is_empty());
            for p in &path {
                let w = to_local_m(ORIGIN, *p);
                if !inside_ring(&outer, w) {
                    let out = to_ring_distance(&outer, w);
                    proptest::prop_assert!(out <= turnaround + 0.05, "{w:?} is {out:.2} m out");
                }
            }
        }
    }
}
