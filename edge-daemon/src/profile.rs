//! Parameter profiles (`firmware-configs/`): reading ArduPilot `.param` and PX4 `.params`
//! files, following the names firmware renamed between versions, and comparing a vehicle's
//! parameters with a profile.
//!
//! A profile describes a role (survey, spray), never one airframe, so a profile naming a
//! vehicle's identity or calibration is refused (`firmware-configs/README.md`, "The rule").
//! Both autopilots keep parameters as 32-bit floats, so values are compared after rounding
//! both sides to `f32`: `21.6` comes back as `21.6000003814697` and still matches.
//!
//! Firmware renames parameters: ArduCopter 4.7 calls `SR0_*` … `SR9_*` `MAV1_*` … `MAV10_*`
//! and `SYSID_MYGCS` `MAV_GCS_SYSID`, moves several from centimetres to metres
//! (`RTL_ALT` → `RTL_ALT_M`), and turns `ARMING_CHECK`, a mask of checks to run, into
//! `ARMING_SKIPCHK`, a mask of checks to skip. A profile written for 4.5/4.6 still applies to
//! a 4.7 vehicle: each name the vehicle does not have is looked up in [`RENAMES`] by the
//! vehicle's reported version, and its value converted the way the firmware's own parameter
//! conversion does on upgrade. A rename whose unit is not known here is reported, like a
//! name the vehicle lacks, never skipped.

use std::collections::BTreeMap;

use serde::Serialize;

/// The firmware a profile is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Ardupilot,
    Px4,
}

impl Family {
    /// As the vehicle view names an autopilot (`ardupilot`, `px4`).
    pub fn of_autopilot(autopilot: &str) -> Option<Family> {
        match autopilot {
            "ardupilot" => Some(Family::Ardupilot),
            "px4" => Some(Family::Px4),
            _ => None,
        }
    }
}

/// A parsed profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Its name, as a path under `firmware-configs/` or the file's name.
    pub name: String,
    pub family: Family,
    /// The firmware versions (major, minor) its `# Firmware:` line names; empty if none.
    pub versions: Vec<(u8, u8)>,
    /// Its parameters, in file order (the order they are written in).
    pub entries: Vec<(String, f64)>,
    /// The file as given, kept with the vehicles that follow it.
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("{name} is never in a profile: {why} (see firmware-configs/README.md)")]
    Forbidden { name: String, why: &'static str },
    #[error("the profile sets no parameter")]
    Empty,
    #[error("no profile {0:?}; this station has {1}")]
    Unknown(String, String),
}

/// The profiles in `firmware-configs/`, built into the binary so that a station needs no
/// files to use them.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "ardupilot/copter-survey.param",
        include_str!("../../firmware-configs/ardupilot/copter-survey.param"),
    ),
    (
        "ardupilot/copter-survey-4.7.param",
        include_str!("../../firmware-configs/ardupilot/copter-survey-4.7.param"),
    ),
    (
        "ardupilot/copter-spray.param",
        include_str!("../../firmware-configs/ardupilot/copter-spray.param"),
    ),
    (
        "px4/multicopter-survey.params",
        include_str!("../../firmware-configs/px4/multicopter-survey.params"),
    ),
];

/// The names of the built-in profiles.
pub fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

/// A built-in profile by name (`ardupilot/copter-survey.param`, or `copter-survey.param`).
pub fn built_in(name: &str) -> Result<Profile, ProfileError> {
    let found = BUILT_IN
        .iter()
        .find(|(n, _)| *n == name || n.rsplit('/').next() == Some(name));
    match found {
        Some((n, text)) => parse(n, text),
        None => Err(ProfileError::Unknown(
            name.to_string(),
            built_in_names().join(", "),
        )),
    }
}

/// Reads a profile. `name` decides the format: `.params` is QGroundControl's (five
/// TAB-separated columns: vehicle, component, name, value, type), anything else
/// Mission Planner's `NAME,VALUE` (MAVProxy's `NAME VALUE` too).
pub fn parse(name: &str, text: &str) -> Result<Profile, ProfileError> {
    let qgc = name.ends_with(".params");
    let mut family = if qgc { Family::Px4 } else { Family::Ardupilot };
    let mut versions = Vec::new();
    let mut entries: Vec<(String, f64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(firmware) = comment.trim().strip_prefix("Firmware:") {
                if versions.is_empty() {
                    versions = versions_in(firmware);
                    if firmware.contains("PX4") {
                        family = Family::Px4;
                    }
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| ProfileError::Line { line: line_no, why };
        let (param, value) = if qgc {
            let columns: Vec<&str> = line.split('\t').collect();
            if columns.len() != 5 {
                return Err(bad(format!(
                    "{} columns; a .params line has five, TAB-separated",
                    columns.len()
                )));
            }
            (columns[2].trim(), columns[3].trim())
        } else {
            let mut parts = line.splitn(2, |c: char| c == ',' || c.is_whitespace());
            let param = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default().trim();
            // Mission Planner may add a comment column after the value.
            let value = value
                .split(|c: char| c == ',' || c.is_whitespace())
                .next()
                .unwrap_or_default();
            (param, value)
        };
        if param.is_empty() || param.len() > 16 || !param.bytes().all(is_name_byte) {
            return Err(bad(format!(
                "{param:?} is not a parameter name (1 to 16 of A-Z, 0-9, _)"
            )));
        }
        let value: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad(format!("{param}: {value:?} is not a number")))?;
        if let Some(why) = forbidden(param) {
            return Err(ProfileError::Forbidden {
                name: param.to_string(),
                why,
            });
        }
        if entries.iter().any(|(n, _)| n == param) {
            return Err(bad(format!("{param} is set twice")));
        }
        entries.push((param.to_string(), value));
    }
    if entries.is_empty() {
        return Err(ProfileError::Empty);
    }
    Ok(Profile {
        name: name.to_string(),
        family,
        versions,
        entries,
        text: text.to_string(),
    })
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
}

/// `4.5`, `1.15` and the like in a `# Firmware:` line.
fn versions_in(text: &str) -> Vec<(u8, u8)> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|word| {
            let mut parts = word.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            Some((major, minor))
        })
        .collect()
}

/// Why a name can never be in a profile: it identifies or calibrates one airframe.
pub fn forbidden(name: &str) -> Option<&'static str> {
    const RULES: &[(&str, &str)] = &[
        ("SYSID_THISMAV", "the vehicle's identity"),
        ("MAV_SYSID", "the vehicle's identity"),
        ("MAV_SYS_ID", "the vehicle's identity"),
        ("INS_*OFFS*", "sensor calibration"),
        ("INS_*SCAL*", "sensor calibration"),
        ("INS_*_ID", "sensor calibration"),
        ("COMPASS_OFS*", "sensor calibration"),
        ("COMPASS_DIA*", "sensor calibration"),
        ("COMPASS_ODI*", "sensor calibration"),
        ("COMPASS_MOT*", "sensor calibration"),
        ("COMPASS_DEV_ID*", "sensor calibration"),
        ("BARO*_GND_PRESS", "sensor calibration"),
        ("AHRS_TRIM_*", "sensor calibration"),
        ("CAL_*", "sensor calibration"),
        ("SENS_BOARD_*_OFF", "sensor calibration"),
        ("RC*_MIN", "RC calibration"),
        ("RC*_MAX", "RC calibration"),
        ("RC*_TRIM", "RC calibration"),
        ("FRAME_CLASS", "the airframe"),
        ("FRAME_TYPE", "the airframe"),
        ("SYS_AUTOSTART", "the airframe"),
        ("BATT_MONITOR", "the airframe's wiring"),
        ("BATT_CAPACITY", "the airframe's battery"),
    ];
    RULES
        .iter()
        .find(|(pattern, _)| glob(pattern.as_bytes(), name.as_bytes()))
        .map(|(_, why)| *why)
}

/// `*` matches any run of characters, everything else itself.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

/// How a renamed parameter's value carries over.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Carry {
    Same,
    /// Multiplied by this (centimetres to metres: 0.01).
    Scale(f64),
    /// ArduCopter 4.7's `ARMING_CHECK` → `ARMING_SKIPCHK`: 0 (no checks) skips all (-1), a
    /// mask with bit 0 (all checks) skips none, any other mask skips the checks it lacks
    /// among the 20 known then (`AP_Arming::init`).
    ArmingChecks,
    /// The meaning or unit changed in a way not converted here: set it by hand.
    ByHand(&'static str),
}

/// ArduPilot renames: (old, new, first version with the new name, how the value carries).
/// Those carried over `Same`, `Scale` or `ArmingChecks` are the firmware's own conversions
/// (its `PARAMETER_CONVERSION … for 4.7` tables, read in the ArduCopter 4.7.0-dev source of
/// February 2026, which converts with those factors on upgrade). The `WPNAV_*` and `PILOT_*`
/// renames are those of later 4.7 development builds: `WP_RADIUS_M` is metres by its name
/// (`WPNAV_RADIUS` was centimetres); the others' units are not known here, so they are
/// reported, not set. `SRn_*` → `MAV{n+1}_*` is in [`renamed`].
const RENAMES: &[(&str, &str, (u8, u8), Carry)] = &[
    ("SYSID_MYGCS", "MAV_GCS_SYSID", (4, 7), Carry::Same),
    (
        "SYSID_ENFORCE",
        "MAV_OPTIONS",
        (4, 7),
        Carry::ByHand("it became bit 0 of a mask of options; set that bit alone"),
    ),
    ("TELEM_DELAY", "MAV_TELEM_DELAY", (4, 7), Carry::Same),
    (
        "ARMING_CHECK",
        "ARMING_SKIPCHK",
        (4, 7),
        Carry::ArmingChecks,
    ),
    ("RTL_ALT", "RTL_ALT_M", (4, 7), Carry::Scale(0.01)),
    (
        "RTL_ALT_FINAL",
        "RTL_ALT_FINAL_M",
        (4, 7),
        Carry::Scale(0.01),
    ),
    ("RTL_SPEED", "RTL_SPEED_MS", (4, 7), Carry::Scale(0.01)),
    (
        "RTL_CLIMB_MIN",
        "RTL_CLIMB_MIN_M",
        (4, 7),
        Carry::Scale(0.01),
    ),
    ("LAND_SPEED", "LAND_SPD_MS", (4, 7), Carry::Scale(0.01)),
    (
        "LAND_SPEED_HIGH",
        "LAND_SPD_HIGH_MS",
        (4, 7),
        Carry::Scale(0.01),
    ),
    ("LAND_ALT_LOW", "LAND_ALT_LOW_M", (4, 7), Carry::Scale(0.01)),
    ("WPNAV_RADIUS", "WP_RADIUS_M", (4, 7), Carry::Scale(0.01)),
    ("LOIT_SPEED", "LOIT_SPEED_MS", (4, 7), Carry::Scale(0.01)),
    ("LOIT_ACC_MAX", "LOIT_ACC_MAX_M", (4, 7), Carry::Scale(0.01)),
    (
        "LOIT_BRK_ACCEL",
        "LOIT_BRK_ACC_M",
        (4, 7),
        Carry::Scale(0.01),
    ),
    (
        "LOIT_BRK_JERK",
        "LOIT_BRK_JRK_M",
        (4, 7),
        Carry::Scale(0.01),
    ),
    (
        "CIRCLE_RADIUS",
        "CIRCLE_RADIUS_M",
        (4, 7),
        Carry::Scale(0.01),
    ),
    ("ANGLE_MAX", "ATC_ANGLE_MAX", (4, 7), Carry::Scale(0.01)),
    (
        "PHLD_BRAKE_ANGLE",
        "PHLD_BRK_ANGLE",
        (4, 7),
        Carry::Scale(0.01),
    ),
    ("WPNAV_SPEED", "WP_SPD", (4, 7), Carry::ByHand(UNIT)),
    ("WPNAV_SPEED_UP", "WP_SPD_UP", (4, 7), Carry::ByHand(UNIT)),
    ("WPNAV_SPEED_DN", "WP_SPD_DN", (4, 7), Carry::ByHand(UNIT)),
    ("WPNAV_ACCEL", "WP_ACC", (4, 7), Carry::ByHand(UNIT)),
    ("WPNAV_ACCEL_Z", "WP_ACC_Z", (4, 7), Carry::ByHand(UNIT)),
    (
        "PILOT_SPEED_UP",
        "PILOT_SPD_UP",
        (4, 7),
        Carry::ByHand(UNIT),
    ),
    (
        "PILOT_SPEED_DN",
        "PILOT_SPD_DN",
        (4, 7),
        Carry::ByHand(UNIT),
    ),
    ("PILOT_ACCEL_Z", "PILOT_ACC_Z", (4, 7), Carry::ByHand(UNIT)),
];

const UNIT: &str = "its unit may have changed with the name; check the firmware's reference";

/// The name `old` has on a vehicle of `version`, and how its value carries over.
fn renamed(old: &str, version: (u8, u8)) -> Option<(String, Carry)> {
    if let Some(&(_, new, since, carry)) = RENAMES.iter().find(|r| r.0 == old) {
        return (version >= since).then(|| (new.to_string(), carry));
    }
    // SR0_RAW_SENS … SR9_ADSB became MAV1_RAW_SENS … MAV10_ADSB.
    let rest = old.strip_prefix("SR")?;
    let (n, stream) = rest.split_once('_')?;
    let n: u8 = n.parse().ok().filter(|n| *n <= 9)?;
    (version >= (4, 7)).then(|| (format!("MAV{}_{stream}", n + 1), Carry::Same))
}

/// `ARMING_CHECK` (checks to run) as ArduCopter 4.7's `ARMING_SKIPCHK` (checks to skip).
fn checks_to_skip(checks: f64) -> f64 {
    let checks = checks as i64 as i32;
    if checks == 0 {
        -1.0
    } else if checks & 1 == 1 {
        0.0
    } else {
        let known = ((1u32 << 21) - 1) & !1;
        f64::from(!(checks as u32) & known)
    }
}

/// Whether two values are the same parameter value: equal as 32-bit floats.
pub fn same_value(a: f64, b: f64) -> bool {
    (a as f32) == (b as f32) || (a - b).abs() < 1e-9
}

/// One parameter where a vehicle and a profile disagree.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Difference {
    /// The name in the profile.
    pub name: String,
    /// The name on the vehicle, where the firmware renamed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle_name: Option<String>,
    /// The profile's value, converted to the vehicle's unit where a rename changed it.
    pub profile: f64,
    /// The vehicle's value; `None` when it has no such parameter.
    pub vehicle: Option<f64>,
    pub state: DifferenceKind,
    /// For people: why it is missing or cannot be set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Both have it, with different values.
    Differs,
    /// The vehicle has no parameter of this name, nor a known new name for it.
    Missing,
    /// The vehicle has it under a new name whose value cannot be converted.
    Unconvertible,
}

impl Difference {
    /// The name to set on the vehicle.
    pub fn target(&self) -> &str {
        self.vehicle_name.as_deref().unwrap_or(&self.name)
    }
}

/// A vehicle against a profile.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    pub profile: String,
    /// Parameters with the profile's value.
    pub matching: usize,
    /// The others, in the profile's order.
    pub differences: Vec<Difference>,
    /// What to know before trusting the comparison (a profile for other firmware versions).
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn drifted(&self) -> bool {
        !self.differences.is_empty()
    }
}

/// Compares `params` (a vehicle's complete list, by name) with `profile`. `version` is the
/// vehicle's firmware (major, minor), when known: renames apply only from the version that
/// made them, and only to names the vehicle does not have.
pub fn compare(
    profile: &Profile,
    params: &BTreeMap<String, f64>,
    version: Option<(u8, u8)>,
) -> Comparison {
    let mut warnings = Vec::new();
    match version {
        Some(v) if !profile.versions.is_empty() && !profile.versions.contains(&v) => {
            let listed: Vec<String> = profile
                .versions
                .iter()
                .map(|(a, b)| format!("{a}.{b}"))
                .collect();
            warnings.push(format!(
                "{} is written for {}; this vehicle runs {}.{}",
                profile.name,
                listed.join(", "),
                v.0,
                v.1
            ));
        }
        None => warnings.push(
            "the vehicle has not reported its firmware version; renamed parameters are \
             followed only where the vehicle has the new name"
                .to_string(),
        ),
        _ => {}
    }
    let mut matching = 0;
    let mut differences = Vec::new();
    for (name, value) in &profile.entries {
        if let Some(&has) = params.get(name) {
            if same_value(has, *value) {
                matching += 1;
            } else {
                differences.push(Difference {
                    name: name.clone(),
                    vehicle_name: None,
                    profile: *value,
                    vehicle: Some(has),
                    state: DifferenceKind::Differs,
                    note: None,
                });
            }
            continue;
        }
        let rename = match profile.family {
            Family::Ardupilot => renamed(name, version.unwrap_or((u8::MAX, 0))),
            Family::Px4 => None,
        };
        let Some((new, carry)) = rename.filter(|(new, _)| params.contains_key(new)) else {
            differences.push(Difference {
                name: name.clone(),
                vehicle_name: None,
                profile: *value,
                vehicle: None,
                state: DifferenceKind::Missing,
                note: Some("the vehicle has no such parameter".into()),
            });
            continue;
        };
        let has = params[&new];
        let (want, state, note) = match carry {
            Carry::Same => (*value, DifferenceKind::Differs, None),
            Carry::Scale(k) => (
                round_to_f32(*value * k),
                DifferenceKind::Differs,
                Some(format!("{name} × {k} (unit changed with the name)")),
            ),
            Carry::ArmingChecks => (
                checks_to_skip(*value),
                DifferenceKind::Differs,
                Some(format!(
                    "{name} {value} as checks to skip (the mask was inverted with the name)"
                )),
            ),
            Carry::ByHand(why) => (
                *value,
                DifferenceKind::Unconvertible,
                Some(format!("renamed {new}: {why}")),
            ),
        };
        if state == DifferenceKind::Differs && same_value(has, want) {
            matching += 1;
            continue;
        }
        differences.push(Difference {
            name: name.clone(),
            vehicle_name: Some(new),
            profile: want,
            vehicle: Some(has),
            state,
            note,
        });
    }
    Comparison {
        profile: profile.name.clone(),
        matching,
        differences,
        warnings,
    }
}

/// `x` as the float a vehicle would store, printed without binary noise (0.4, not
/// 0.4000000059604645).
pub fn round_to_f32(x: f64) -> f64 {
    let f = x as f32;
    f.to_string().parse().unwrap_or(f64::from(f))
}

/// A parameter value as people read it, whatever its type: whole numbers as they are (an
/// int32 needs all its digits), others as the 32-bit float the vehicle holds.
pub fn tidy(value: f64) -> f64 {
    if value.fract() == 0.0 {
        value
    } else {
        round_to_f32(value)
    }
}

/// Whether a changed parameter takes effect only after a reboot (serial ports and their
/// stream rates).
pub fn needs_reboot(family: Family, name: &str) -> bool {
    match family {
        Family::Ardupilot => {
            let numbered = |prefix: &str| {
                name.strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            };
            numbered("SERIAL") || numbered("SR") || numbered("MAV")
        }
        Family::Px4 => name.starts_with("MAV_") || name.starts_with("SER_"),
    }
}

/// Whether changing `name` can make parameters appear (`SPRAY_ENABLE` shows `SPRAY_*`).
pub fn is_enable(name: &str) -> bool {
    name.ends_with("_ENABLE") || name.ends_with("_ENABLED")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vehicle(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    #[test]
    fn every_built_in_profile_parses_with_its_firmware() {
        let survey = built_in("ardupilot/copter-survey.param").unwrap();
        assert_eq!(survey.family, Family::Ardupilot);
        assert_eq!(survey.versions, vec![(4, 5), (4, 6)]);
        assert_eq!(survey.entries.len(), 55);
        assert_eq!(survey.entries[0], ("WPNAV_SPEED".to_string(), 600.0));
        let survey_4_7 = built_in("copter-survey-4.7.param").unwrap();
        assert_eq!(survey_4_7.versions, vec![(4, 7)]);
        assert_eq!(survey_4_7.entries.len(), 55);
        // The same role: each 4.5/4.6 value, followed to its 4.7 name, is the 4.7 profile's.
        let on_4_7: BTreeMap<String, f64> = survey_4_7.entries.iter().cloned().collect();
        let c = compare(&survey, &on_4_7, Some((4, 7)));
        assert_eq!((c.matching, c.differences.len()), (55, 0), "{c:?}");
        let px4 = built_in("multicopter-survey.params").unwrap();
        assert_eq!(px4.family, Family::Px4);
        assert_eq!(px4.versions, vec![(1, 15)]);
        assert!(px4.entries.iter().any(|(n, _)| n == "RTL_RETURN_ALT"));
        let spray = built_in("copter-spray.param").unwrap();
        let spray_at = |n: &str| spray.entries.iter().position(|(e, _)| e == n).unwrap();
        assert!(spray_at("SPRAY_ENABLE") < spray_at("SPRAY_PUMP_RATE"));
        assert!(matches!(
            built_in("nope.param"),
            Err(ProfileError::Unknown(..))
        ));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_line() {
        let line = |text: &str| match parse("x.param", text) {
            Err(ProfileError::Line { line, .. }) => line,
            other => panic!("{other:?}"),
        };
        assert_eq!(line("# c\nRTL_ALT,abc\n"), 2);
        assert_eq!(line("RTL_ALT,1\nrtl alt,2\n"), 2);
        assert_eq!(line("RTL_ALT,1\nRTL_ALT,2\n"), 2);
        assert_eq!(line("RTL_ALT,inf\n"), 1);
        assert_eq!(parse("x.param", "# only\n\n"), Err(ProfileError::Empty));
        assert!(matches!(
            parse("x.param", "SYSID_THISMAV,3\n"),
            Err(ProfileError::Forbidden { .. })
        ));
        assert!(matches!(
            parse("x.param", "COMPASS_OFS_X,12\n"),
            Err(ProfileError::Forbidden { .. })
        ));
        assert!(matches!(
            parse("x.params", "1\t1\tCAL_ACC0_ID\t1\t6\n"),
            Err(ProfileError::Forbidden { .. })
        ));
        match parse("x.params", "1\t1\tRTL_RETURN_ALT\t40\n") {
            Err(ProfileError::Line { line: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        // MAVProxy's space-separated form and a trailing comment column.
        let p = parse("x.param", "RTL_ALT 4000\nWPNAV_SPEED,600,# legs\n").unwrap();
        assert_eq!(
            p.entries,
            vec![("RTL_ALT".into(), 4000.0), ("WPNAV_SPEED".into(), 600.0)]
        );
    }

    #[test]
    fn values_compare_as_the_vehicle_stores_them() {
        let p = parse("x.param", "BATT_LOW_VOLT,21.6\nRTL_ALT,4000\n").unwrap();
        let c = compare(
            &p,
            &vehicle(&[("BATT_LOW_VOLT", 21.600_000_381_469_7), ("RTL_ALT", 3000.0)]),
            Some((4, 5)),
        );
        assert_eq!(c.matching, 1);
        assert_eq!(c.differences.len(), 1);
        assert_eq!(c.differences[0].name, "RTL_ALT");
        assert_eq!(c.differences[0].vehicle, Some(3000.0));
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn a_4_5_profile_follows_the_4_7_names_and_reports_what_it_cannot_set() {
        let p = parse(
            "x.param",
            "# Firmware: ArduCopter 4.5 and 4.6\nSR1_POSITION,2\nSR0_EXTRA1,4\nSYSID_MYGCS,245\n\
             RTL_ALT,4000\nARMING_CHECK,1\nWPNAV_SPEED,600\nSPRAY_PUMP_RATE,10\n",
        )
        .unwrap();
        let on_4_7 = vehicle(&[
            ("MAV2_POSITION", 2.0),
            ("MAV1_EXTRA1", 0.0),
            ("MAV_GCS_SYSID", 255.0),
            ("RTL_ALT_M", 40.0),
            ("ARMING_SKIPCHK", 0.0),
            ("WP_SPD", 6.0),
        ]);
        let c = compare(&p, &on_4_7, Some((4, 7)));
        assert_eq!(
            c.matching, 3,
            "MAV2_POSITION, RTL_ALT_M (4000 cm = 40 m) and ARMING_SKIPCHK (all checks = skip none) match"
        );
        let got: Vec<(&str, Option<&str>, DifferenceKind)> = c
            .differences
            .iter()
            .map(|d| (d.name.as_str(), d.vehicle_name.as_deref(), d.state))
            .collect();
        assert_eq!(
            got,
            vec![
                ("SR0_EXTRA1", Some("MAV1_EXTRA1"), DifferenceKind::Differs),
                (
                    "SYSID_MYGCS",
                    Some("MAV_GCS_SYSID"),
                    DifferenceKind::Differs
                ),
                ("WPNAV_SPEED", Some("WP_SPD"), DifferenceKind::Unconvertible),
                ("SPRAY_PUMP_RATE", None, DifferenceKind::Missing),
            ]
        );
        assert_eq!(c.warnings.len(), 1, "written for 4.5/4.6: {:?}", c.warnings);
        // A 4.6 vehicle lacking a name is not given a 4.7 one.
        let c = compare(&p, &vehicle(&[("MAV2_POSITION", 2.0)]), Some((4, 6)));
        assert!(c
            .differences
            .iter()
            .all(|d| d.state == DifferenceKind::Missing));
    }

    #[test]
    fn arming_checks_become_checks_to_skip_as_the_firmware_converts_them() {
        assert_eq!(checks_to_skip(1.0), 0.0, "all checks: skip none");
        assert_eq!(checks_to_skip(0.0), -1.0, "no checks: skip all");
        assert_eq!(checks_to_skip(3.0), 0.0, "bit 0 wins");
        // Barometer (bit 1) and GPS lock (bit 3) only: skip every other known check.
        let skip = checks_to_skip(f64::from((1 << 1) | (1 << 3)));
        assert_eq!(
            skip,
            f64::from(((1u32 << 21) - 1) & !1 & !(1 << 1) & !(1 << 3))
        );
    }

    #[test]
    fn reboots_and_enables_are_recognised() {
        assert!(needs_reboot(Family::Ardupilot, "SERIAL1_BAUD"));
        assert!(needs_reboot(Family::Ardupilot, "SR1_POSITION"));
        assert!(needs_reboot(Family::Ardupilot, "MAV2_POSITION"));
        assert!(!needs_reboot(Family::Ardupilot, "RTL_ALT"));
        assert!(!needs_reboot(Family::Ardupilot, "MAV_GCS_SYSID"));
        assert!(needs_reboot(Family::Px4, "MAV_0_RATE"));
        assert!(needs_reboot(Family::Px4, "SER_TEL1_BAUD"));
        assert!(is_enable("SPRAY_ENABLE"));
        assert!(!is_enable("FENCE_TYPE"));
        assert!(glob(b"RC*_MIN", b"RC10_MIN"));
        assert!(!glob(b"RC*_MIN", b"RC10_MINX"));
    }
}
