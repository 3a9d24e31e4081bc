//! Flight-mode names decoded from MAVLink `HEARTBEAT`, and the reverse for
//! commanding a mode change.
//!
//! A heartbeat does not carry a mode *name*, only numbers:
//!
//! * `autopilot` (`MAV_AUTOPILOT`, common.xml) says whose numbering applies:
//!   3 = ArduPilot, 12 = PX4. Heartbeats from GCSs, companions or gimbals say
//!   8 (`MAV_AUTOPILOT_INVALID`) and decode as [`Firmware::Other`].
//! * `mav_type` (`MAV_TYPE`, common.xml) is needed for ArduPilot only, because
//!   each ArduPilot vehicle has its own table and the tables overlap: custom
//!   mode 10 is AUTO on Plane and Rover but is unused on Copter (AUTO = 3).
//! * `base_mode` (`MAV_MODE_FLAG` bits). `custom_mode` is only meaningful when
//!   bit 0 (`MAV_MODE_FLAG_CUSTOM_MODE_ENABLED`) is set; without it the
//!   generic STABILIZE/GUIDED/AUTO flag bits are all there is.
//! * `custom_mode`, the firmware's own mode number.
//!
//! Where the numbers come from:
//!
//! * ArduPilot: the `enum class Number` in `ArduCopter/mode.h`,
//!   `ArduPlane/mode.h`, `Rover/mode.h` and `ArduSub/mode.h`. The vehicle sends
//!   that number verbatim as `custom_mode` and accepts it back as `param2` of
//!   `MAV_CMD_DO_SET_MODE`. Numbers are never reused, only added, so the tables
//!   below hold for older firmware too (a mode it lacks just never shows up).
//!   Names are the enum names, which are what Mission Planner shows.
//! * PX4: `px4_custom_mode.h`. `custom_mode` is a union whose byte 2 is the
//!   main mode and byte 3 the sub mode (bytes 0-1 reserved), so
//!   `custom_mode = main << 16 | sub << 24`. Sub modes only mean something
//!   under AUTO (mission, hold, return, ...) and POSCTL (orbit, slow). Names
//!   are the ones QGroundControl shows ("Position", "Hold", "Return", ...).

/// `MAV_MODE_FLAG_CUSTOM_MODE_ENABLED`: `custom_mode` holds a firmware mode.
const FLAG_CUSTOM_MODE: u8 = 0x01;
/// `MAV_MODE_FLAG_TEST_ENABLED`.
const FLAG_TEST: u8 = 0x02;
/// `MAV_MODE_FLAG_AUTO_ENABLED`.
const FLAG_AUTO: u8 = 0x04;
/// `MAV_MODE_FLAG_GUIDED_ENABLED`.
const FLAG_GUIDED: u8 = 0x08;
/// `MAV_MODE_FLAG_STABILIZE_ENABLED`.
const FLAG_STABILIZE: u8 = 0x10;
/// `MAV_MODE_FLAG_MANUAL_INPUT_ENABLED`.
const FLAG_MANUAL_INPUT: u8 = 0x40;
/// `MAV_MODE_FLAG_SAFETY_ARMED`.
const FLAG_SAFETY_ARMED: u8 = 0x80;

const AUTOPILOT_ARDUPILOTMEGA: u8 = 3;
const AUTOPILOT_PX4: u8 = 12;

/// Which family of mode table applies.
///
/// ArduPilot ships one firmware per vehicle kind, each with its own mode
/// numbers, so the ArduPilot variants must be told apart by `MAV_TYPE`.
/// PX4 uses one numbering for every airframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    ArduCopter,
    ArduPlane,
    ArduRover,
    ArduSub,
    Px4,
    /// Unknown autopilot, or an ArduPilot vehicle without a table here
    /// (Blimp, AntennaTracker, ...). Custom modes decode as `MODE(n)`.
    Other,
}

/// Pick the mode table for a heartbeat's `autopilot` and `mav_type`.
///
/// ArduPlane reports `MAV_TYPE_FIXED_WING`, or a VTOL type for a QuadPlane,
/// so every VTOL type maps to [`Firmware::ArduPlane`]. A QuadPlane whose
/// `Q_MAV_TYPE` parameter is set to a multicopter type (an old trick for GCS
/// compatibility) is indistinguishable from a Copter here, as in any GCS.
pub fn firmware(autopilot: u8, mav_type: u8) -> Firmware {
    match (autopilot, mav_type) {
        (AUTOPILOT_PX4, _) => Firmware::Px4,
        (AUTOPILOT_ARDUPILOTMEGA, t) => match t {
            // quad, coaxial, helicopter, hexa, octo, tri, dodeca, deca, generic multirotor
            2 | 3 | 4 | 13 | 14 | 15 | 29 | 35 | 43 => Firmware::ArduCopter,
            // fixed wing, VTOL 19..=25 (tailsitters, tilt-rotor/-wing, ...), VTOL gyrodyne
            1 | 19..=25 | 47 => Firmware::ArduPlane,
            // ground rover, surface boat
            10 | 11 => Firmware::ArduRover,
            12 => Firmware::ArduSub,
            _ => Firmware::Other,
        },
        _ => Firmware::Other,
    }
}

/// `(custom_mode, name)` pairs, from `ArduCopter/mode.h`.
const COPTER: &[(u32, &str)] = &[
    (0, "STABILIZE"),
    (1, "ACRO"),
    (2, "ALT_HOLD"),
    (3, "AUTO"),
    (4, "GUIDED"),
    (5, "LOITER"),
    (6, "RTL"),
    (7, "CIRCLE"),
    (9, "LAND"),
    (11, "DRIFT"),
    (13, "SPORT"),
    (14, "FLIP"),
    (15, "AUTOTUNE"),
    (16, "POSHOLD"),
    (17, "BRAKE"),
    (18, "THROW"),
    (19, "AVOID_ADSB"),
    (20, "GUIDED_NOGPS"),
    (21, "SMART_RTL"),
    (22, "FLOWHOLD"),
    (23, "FOLLOW"),
    (24, "ZIGZAG"),
    (25, "SYSTEMID"),
    (26, "AUTOROTATE"),
    (27, "AUTO_RTL"),
    (28, "TURTLE"),
];

/// From `ArduPlane/mode.h`. INITIALISING is reported while booting and is
/// refused as a mode-change target; AUTOLAND arrived in Plane 4.6.
const PLANE: &[(u32, &str)] = &[
    (0, "MANUAL"),
    (1, "CIRCLE"),
    (2, "STABILIZE"),
    (3, "TRAINING"),
    (4, "ACRO"),
    (5, "FBWA"),
    (6, "FBWB"),
    (7, "CRUISE"),
    (8, "AUTOTUNE"),
    (10, "AUTO"),
    (11, "RTL"),
    (12, "LOITER"),
    (13, "TAKEOFF"),
    (14, "AVOID_ADSB"),
    (15, "GUIDED"),
    (16, "INITIALISING"),
    (17, "QSTABILIZE"),
    (18, "QHOVER"),
    (19, "QLOITER"),
    (20, "QLAND"),
    (21, "QRTL"),
    (22, "QAUTOTUNE"),
    (23, "QACRO"),
    (24, "THERMAL"),
    (25, "LOITER_ALT_QLAND"),
    (26, "AUTOLAND"),
];

/// From `Rover/mode.h` (Rover and Boat share it).
const ROVER: &[(u32, &str)] = &[
    (0, "MANUAL"),
    (1, "ACRO"),
    (3, "STEERING"),
    (4, "HOLD"),
    (5, "LOITER"),
    (6, "FOLLOW"),
    (7, "SIMPLE"),
    (8, "DOCK"),
    (9, "CIRCLE"),
    (10, "AUTO"),
    (11, "RTL"),
    (12, "SMART_RTL"),
    (15, "GUIDED"),
    (16, "INITIALISING"),
];

/// From `ArduSub/mode.h`.
const SUB: &[(u32, &str)] = &[
    (0, "STABILIZE"),
    (1, "ACRO"),
    (2, "ALT_HOLD"),
    (3, "AUTO"),
    (4, "GUIDED"),
    (7, "CIRCLE"),
    (9, "SURFACE"),
    (16, "POSHOLD"),
    (19, "MANUAL"),
    (20, "MOTOR_DETECT"),
    (21, "SURFTRAK"),
];

/// Pack a PX4 main mode and sub mode the way `union px4_custom_mode` does.
const fn px4(main: u32, sub: u32) -> u32 {
    (main << 16) | (sub << 24)
}

/// PX4 packed custom modes with QGroundControl's names. Main modes: 1 MANUAL,
/// 2 ALTCTL, 3 POSCTL, 4 AUTO, 5 ACRO, 6 OFFBOARD, 7 STABILIZED, 8 RATTITUDE,
/// 10 TERMINATION. Sub mode 7 under AUTO (RTGS) was removed from PX4.
const PX4: &[(u32, &str)] = &[
    (px4(1, 0), "Manual"),
    (px4(2, 0), "Altitude"),
    (px4(3, 0), "Position"),
    (px4(3, 1), "Orbit"),
    (px4(3, 2), "Position Slow"),
    (px4(4, 1), "Ready"),
    (px4(4, 2), "Takeoff"),
    (px4(4, 3), "Hold"),
    (px4(4, 4), "Mission"),
    (px4(4, 5), "Return"),
    (px4(4, 6), "Land"),
    (px4(4, 8), "Follow Me"),
    (px4(4, 9), "Precision Land"),
    (px4(4, 10), "VTOL Takeoff"),
    (px4(5, 0), "Acro"),
    (px4(6, 0), "Offboard"),
    (px4(7, 0), "Stabilized"),
    (px4(8, 0), "Rattitude"),
    (px4(10, 0), "Termination"),
];

fn table(firmware: Firmware) -> &'static [(u32, &'static str)] {
    match firmware {
        Firmware::ArduCopter => COPTER,
        Firmware::ArduPlane => PLANE,
        Firmware::ArduRover => ROVER,
        Firmware::ArduSub => SUB,
        Firmware::Px4 => PX4,
        Firmware::Other => &[],
    }
}

/// The PX4 table key for a heartbeat `custom_mode`: drop the reserved low
/// bytes, and the sub mode wherever PX4 does not define one (it sends 0).
fn px4_key(custom_mode: u32) -> u32 {
    match (custom_mode >> 16) & 0xFF {
        3 | 4 => custom_mode & 0xFFFF_0000,
        _ => custom_mode & 0x00FF_0000,
    }
}

/// Name from the generic `MAV_MODE_FLAG` bits, for heartbeats without a
/// custom mode. The standard `MAV_MODE`s are cumulative (AUTO = manual input +
/// stabilize + guided + auto), so the most autonomous bit set wins.
fn base_mode_name(base_mode: u8) -> &'static str {
    [
        (FLAG_AUTO, "AUTO"),
        (FLAG_GUIDED, "GUIDED"),
        (FLAG_STABILIZE, "STABILIZE"),
        (FLAG_MANUAL_INPUT, "MANUAL"),
        (FLAG_TEST, "TEST"),
    ]
    .iter()
    .find(|(flag, _)| base_mode & flag != 0)
    .map_or("UNKNOWN", |(_, name)| name)
}

/// Human mode name as pilots know it in QGroundControl/Mission Planner, e.g. "AUTO", "GUIDED", "RTL", "Mission", "Hold". Unknown values give e.g. "MODE(42)".
///
/// ArduPilot names are the upper-case `mode.h` enum names; PX4 names are
/// QGroundControl's. A custom mode missing from the table (newer firmware,
/// a fork, or [`Firmware::Other`]) gives `MODE(n)` with the raw number, in
/// decimal for ArduPilot and others and in hex for PX4, where hex shows the
/// sub and main mode bytes at a glance (`MODE(0x07040000)`: AUTO, sub mode
/// 7). Without the custom-mode flag the name comes from the `base_mode` bits
/// ("AUTO", "GUIDED", "STABILIZE", "MANUAL", "TEST") or is "UNKNOWN".
pub fn mode_name(autopilot: u8, mav_type: u8, base_mode: u8, custom_mode: u32) -> String {
    if base_mode & FLAG_CUSTOM_MODE == 0 {
        return base_mode_name(base_mode).to_string();
    }
    let firmware = firmware(autopilot, mav_type);
    let key = match firmware {
        Firmware::Px4 => px4_key(custom_mode),
        _ => custom_mode,
    };
    match table(firmware).iter().find(|(number, _)| *number == key) {
        Some((_, name)) => (*name).to_string(),
        None if firmware == Firmware::Px4 => format!("MODE(0x{custom_mode:08X})"),
        None => format!("MODE({custom_mode})"),
    }
}

/// Case-insensitive name comparison that also treats ' ', '-' and '_' alike,
/// so "alt hold", "Smart-RTL" and "follow_me" all match.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |c: char| match c {
        ' ' | '-' => '_',
        c => c.to_ascii_uppercase(),
    };
    a.trim().chars().map(norm).eq(b.trim().chars().map(norm))
}

/// The reverse, for commanding a mode change: (base_mode, custom_mode) to put in MAV_CMD_DO_SET_MODE / SET_MODE. Case-insensitive name match; None when the firmware has no such mode.
///
/// `base_mode` is always 1 (`MAV_MODE_FLAG_CUSTOM_MODE_ENABLED`), which tells
/// the autopilot to read the custom mode; the armed bit is deliberately left
/// clear because arming goes through `MAV_CMD_COMPONENT_ARM_DISARM`.
///
/// Where the numbers go differs by firmware:
/// * ArduPilot: `MAV_CMD_DO_SET_MODE` param1 = base_mode, param2 = custom_mode,
///   or the `SET_MODE` message as is.
/// * PX4: the `SET_MODE` message takes the packed custom_mode as is, but
///   `MAV_CMD_DO_SET_MODE` wants param2 = main mode `(custom_mode >> 16) & 0xFF`
///   and param3 = sub mode `custom_mode >> 24`. PX4 casts each param to `u8`,
///   so a packed value in param2 becomes a silent no-op that is still ACKed.
///
/// This is a table lookup only: the vehicle may still refuse a listed mode
/// (INITIALISING, PX4 "Ready" or "Termination", modes compiled out of a build,
/// or pre-arm/position checks).
pub fn mode_number(firmware: Firmware, name: &str) -> Option<(u8, u32)> {
    table(firmware)
        .iter()
        .find(|(_, mode)| same_name(mode, name))
        .map(|(number, _)| (FLAG_CUSTOM_MODE, *number))
}

/// Every mode name a firmware has, as [`mode_name`] gives them.
pub fn names(firmware: Firmware) -> Vec<&'static str> {
    table(firmware).iter().map(|(_, name)| *name).collect()
}

/// The name a firmware gives `custom_mode` (as written in its table), if it has one.
pub fn canonical_name(firmware: Firmware, custom_mode: u32) -> Option<&'static str> {
    table(firmware)
        .iter()
        .find(|(number, _)| *number == custom_mode)
        .map(|(_, name)| *name)
}

/// Whether the vehicle is armed (MAV_MODE_FLAG_SAFETY_ARMED, bit 7 of base_mode).
///
/// Both ArduPilot and PX4 set this bit whenever the motors may spin, whatever
/// the custom-mode flag says, so it is safe to read from any autopilot
/// heartbeat.
pub fn is_armed(base_mode: u8) -> bool {
    base_mode & FLAG_SAFETY_ARMED != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Firmware; 5] = [
        Firmware::ArduCopter,
        Firmware::ArduPlane,
        Firmware::ArduRover,
        Firmware::ArduSub,
        Firmware::Px4,
    ];

    /// A heartbeat `(autopilot, mav_type)` that selects `firmware`.
    fn heartbeat_ids(firmware: Firmware) -> (u8, u8) {
        match firmware {
            Firmware::ArduCopter => (3, 2),
            Firmware::ArduPlane => (3, 1),
            Firmware::ArduRover => (3, 10),
            Firmware::ArduSub => (3, 12),
            Firmware::Px4 => (12, 2),
            Firmware::Other => (0, 0),
        }
    }

    #[test]
    fn every_entry_round_trips() {
        for fw in ALL {
            let (autopilot, mav_type) = heartbeat_ids(fw);
            assert_eq!(firmware(autopilot, mav_type), fw);
            for &(number, name) in table(fw) {
                assert_eq!(mode_number(fw, name), Some((1, number)), "{fw:?} {name}");
                let lower = name.to_lowercase();
                assert_eq!(mode_number(fw, &lower), Some((1, number)), "{fw:?} {lower}");
                let (base, custom) = mode_number(fw, name).unwrap();
                // Heartbeats also carry the armed and other flag bits.
                for extra in [0, FLAG_SAFETY_ARMED | FLAG_STABILIZE] {
                    assert_eq!(mode_name(autopilot, mav_type, base | extra, custom), name);
                }
            }
        }
    }

    #[test]
    fn tables_have_unique_numbers_and_names() {
        for fw in ALL {
            let t = table(fw);
            for (i, a) in t.iter().enumerate() {
                for b in &t[i + 1..] {
                    assert_ne!(a.0, b.0, "{fw:?} duplicate number");
                    assert!(!same_name(a.1, b.1), "{fw:?} duplicate name {}", a.1);
                }
            }
        }
    }

    #[test]
    fn ardupilot_numbers_match_mode_h() {
        let cases = [
            (Firmware::ArduCopter, "STABILIZE", 0),
            (Firmware::ArduCopter, "AUTO", 3),
            (Firmware::ArduCopter, "LAND", 9),
            (Firmware::ArduCopter, "SMART_RTL", 21),
            (Firmware::ArduCopter, "TURTLE", 28),
            (Firmware::ArduPlane, "FBWA", 5),
            (Firmware::ArduPlane, "AUTO", 10),
            (Firmware::ArduPlane, "GUIDED", 15),
            (Firmware::ArduPlane, "QRTL", 21),
            (Firmware::ArduPlane, "LOITER_ALT_QLAND", 25),
            (Firmware::ArduRover, "HOLD", 4),
            (Firmware::ArduRover, "DOCK", 8),
            (Firmware::ArduRover, "SMART_RTL", 12),
            (Firmware::ArduRover, "GUIDED", 15),
            (Firmware::ArduSub, "SURFACE", 9),
            (Firmware::ArduSub, "MANUAL", 19),
        ];
        for (fw, name, number) in cases {
            assert_eq!(mode_number(fw, name), Some((1, number)), "{fw:?} {name}");
        }
        // Same number, different vehicle, different mode.
        assert_eq!(mode_name(3, 2, 1, 6), "RTL");
        assert_eq!(mode_name(3, 1, 1, 6), "FBWB");
        assert_eq!(mode_name(3, 11, 1, 6), "FOLLOW");
    }

    #[test]
    fn px4_packing() {
        assert_eq!(mode_number(Firmware::Px4, "Manual"), Some((1, 0x0001_0000)));
        assert_eq!(
            mode_number(Firmware::Px4, "Position"),
            Some((1, 0x0003_0000))
        );
        assert_eq!(
            mode_number(Firmware::Px4, "mission"),
            Some((1, 0x0404_0000))
        );
        assert_eq!(mode_number(Firmware::Px4, "HOLD"), Some((1, 0x0304_0000)));
        assert_eq!(mode_number(Firmware::Px4, "Return"), Some((1, 0x0504_0000)));
        assert_eq!(
            mode_number(Firmware::Px4, "follow me"),
            Some((1, 0x0804_0000))
        );
        assert_eq!(
            mode_number(Firmware::Px4, "Precision_Land"),
            Some((1, 0x0904_0000))
        );
        // A real PX4 heartbeat: armed, custom, auto|guided|stabilize, Mission.
        assert_eq!(mode_name(12, 2, 0x9D, 0x0404_0000), "Mission");
        // Reserved low bytes are ignored; so is a sub mode where PX4 has none.
        assert_eq!(mode_name(12, 2, 1, 0x0404_1234), "Mission");
        assert_eq!(mode_name(12, 2, 1, 0x0707_0000), "Stabilized");
        // PX4 numbering does not depend on MAV_TYPE.
        assert_eq!(mode_name(12, 1, 1, 0x0003_0000), "Position");
        assert_eq!(mode_name(12, 22, 1, 0x0103_0000), "Orbit");
    }

    #[test]
    fn unknown_values() {
        assert_eq!(mode_name(3, 2, 1, 42), "MODE(42)");
        assert_eq!(mode_name(3, 2, 1, 8), "MODE(8)");
        assert_eq!(mode_name(3, 1, 1, 9), "MODE(9)");
        assert_eq!(mode_name(12, 2, 1, 0x0704_0000), "MODE(0x07040000)");
        assert_eq!(mode_name(12, 2, 1, 0x0004_0000), "MODE(0x00040000)");
        assert_eq!(mode_name(0, 2, 1, 5), "MODE(5)");
        assert_eq!(mode_name(3, 7, 1, 3), "MODE(3)"); // Blimp: no table here
        assert_eq!(mode_number(Firmware::ArduCopter, "FBWA"), None);
        assert_eq!(mode_number(Firmware::ArduPlane, "ALT_HOLD"), None);
        assert_eq!(mode_number(Firmware::Px4, "RTL"), None);
        assert_eq!(mode_number(Firmware::Px4, ""), None);
        assert_eq!(mode_number(Firmware::Other, "AUTO"), None);
    }

    #[test]
    fn name_matching_is_forgiving_about_case_and_separators() {
        let copter = Firmware::ArduCopter;
        assert_eq!(mode_number(copter, "alt hold"), Some((1, 2)));
        assert_eq!(mode_number(copter, " Smart-RTL "), Some((1, 21)));
        assert_eq!(mode_number(copter, "ALTHOLD"), None);
    }

    #[test]
    fn base_mode_fallback_without_custom_flag() {
        // MAV_MODE values from common.xml, with and without the armed bit.
        assert_eq!(mode_name(3, 2, 92, 3), "AUTO"); // custom_mode ignored
        assert_eq!(mode_name(3, 2, 92 | 0x80, 0), "AUTO");
        assert_eq!(mode_name(12, 2, 88, 0), "GUIDED");
        assert_eq!(mode_name(0, 0, 80, 0), "STABILIZE");
        assert_eq!(mode_name(0, 0, 64 | 0x80, 0), "MANUAL");
        assert_eq!(mode_name(0, 0, 66, 0), "MANUAL");
        assert_eq!(mode_name(0, 0, 2, 0), "TEST");
        assert_eq!(mode_name(3, 2, 0, 0), "UNKNOWN");
        assert_eq!(mode_name(3, 2, 0x80 | 0x20, 7), "UNKNOWN");
    }

    #[test]
    fn armed_flag() {
        assert!(is_armed(0x80));
        assert!(is_armed(0x81 | 0x1C));
        assert!(!is_armed(0x00));
        assert!(!is_armed(0x7F));
    }

    #[test]
    fn firmware_detection() {
        for t in [2, 3, 4, 13, 14, 15, 29, 35, 43] {
            assert_eq!(firmware(3, t), Firmware::ArduCopter, "MAV_TYPE {t}");
        }
        for t in [1, 19, 20, 21, 22, 23, 24, 25, 47] {
            assert_eq!(firmware(3, t), Firmware::ArduPlane, "MAV_TYPE {t}");
        }
        assert_eq!(firmware(3, 10), Firmware::ArduRover);
        assert_eq!(firmware(3, 11), Firmware::ArduRover);
        assert_eq!(firmware(3, 12), Firmware::ArduSub);
        assert_eq!(firmware(3, 0), Firmware::Other);
        assert_eq!(firmware(3, 5), Firmware::Other); // AntennaTracker
        assert_eq!(firmware(3, 6), Firmware::Other); // GCS
        assert_eq!(firmware(12, 2), Firmware::Px4);
        assert_eq!(firmware(12, 1), Firmware::Px4);
        assert_eq!(firmware(12, 10), Firmware::Px4);
        assert_eq!(firmware(8, 2), Firmware::Other); // MAV_AUTOPILOT_INVALID
        assert_eq!(firmware(0, 2), Firmware::Other);
    }
}
