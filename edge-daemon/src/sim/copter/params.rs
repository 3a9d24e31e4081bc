//! The parameter table: about 40 real ArduCopter parameters, the PARAM_* protocol, and the
//! parameters whose change takes effect at once (the `SR1_*` stream rates).

use mavlink::dialects::ardupilotmega::{
    MavMessage, MavParamType, ATTITUDE_DATA, GLOBAL_POSITION_INT_DATA, GPS_RAW_INT_DATA,
    PARAM_REQUEST_READ_DATA, PARAM_SET_DATA, PARAM_VALUE_DATA, SYS_STATUS_DATA, VFR_HUD_DATA,
};
use mavlink::types::CharArray;
use mavlink::MessageData;

use super::mission::SURVEY_SPEED_MPS;
use super::Copter;

/// One parameter: name, value (ArduPilot sends every type as a float), type.
#[derive(Debug, Clone)]
struct Param {
    name: &'static str,
    value: f32,
    kind: MavParamType,
}

/// A small but real ArduCopter parameter table, sorted by name.
#[derive(Debug, Clone)]
pub(super) struct Params {
    list: Vec<Param>,
}

impl Params {
    pub(super) fn defaults(sysid: u8, telemetry_hz: f64) -> Self {
        use MavParamType::{
            MAV_PARAM_TYPE_INT16 as I16, MAV_PARAM_TYPE_INT32 as I32, MAV_PARAM_TYPE_INT8 as I8,
            MAV_PARAM_TYPE_REAL32 as F32,
        };
        let hz = telemetry_hz as f32;
        let table: [(&'static str, f32, MavParamType); 43] = [
            ("ANGLE_MAX", 3000.0, I16),
            ("ARMING_CHECK", 1.0, I32),
            ("BATT_ARM_MAH", 0.0, I32),
            ("BATT_CAPACITY", 5000.0, I32),
            ("BATT_CRT_MAH", 500.0, I32),
            ("BATT_CRT_VOLT", 20.4, F32),
            ("BATT_FS_CRT_ACT", 1.0, I8),
            ("BATT_FS_LOW_ACT", 2.0, I8),
            ("BATT_LOW_MAH", 1250.0, I32),
            ("BATT_LOW_TIMER", 10.0, I8),
            ("BATT_LOW_VOLT", 21.0, F32),
            ("BATT_MONITOR", 4.0, I8),
            ("DISARM_DELAY", 10.0, I8),
            ("FENCE_ACTION", 1.0, I8),
            ("FENCE_ALT_MAX", 100.0, F32),
            ("FENCE_ENABLE", 0.0, I8),
            ("FENCE_RADIUS", 300.0, F32),
            ("FENCE_TYPE", 7.0, I8),
            ("FRAME_CLASS", 1.0, I8),
            ("FRAME_TYPE", 1.0, I8),
            ("FS_GCS_ENABLE", 0.0, I8),
            ("FS_GCS_TIMEOUT", 5.0, F32),
            ("FS_THR_ENABLE", 0.0, I8),
            ("GPS_TYPE", 1.0, I8),
            ("LAND_SPEED", 50.0, I16),
            ("LAND_SPEED_HIGH", 0.0, I16),
            ("MOT_THST_HOVER", 0.35, F32),
            ("RTL_ALT", 1500.0, I32),
            ("RTL_ALT_FINAL", 0.0, I16),
            ("RTL_LOIT_TIME", 5000.0, I32),
            ("RTL_SPEED", 0.0, I16),
            ("SR1_EXTRA1", hz, I16),
            ("SR1_EXTRA2", hz / 2.5, I16),
            ("SR1_EXT_STAT", 2.0, I16),
            ("SR1_POSITION", hz, I16),
            ("SYSID_ENFORCE", 0.0, I8),
            ("SYSID_MYGCS", 255.0, I16),
            ("SYSID_THISMAV", f32::from(sysid), I16),
            ("WPNAV_ACCEL", 200.0, F32),
            ("WPNAV_RADIUS", 200.0, F32),
            ("WPNAV_SPEED", (SURVEY_SPEED_MPS * 100.0) as f32, F32),
            ("WPNAV_SPEED_DN", 150.0, F32),
            ("WPNAV_SPEED_UP", 250.0, F32),
        ];
        Self {
            list: table
                .into_iter()
                .map(|(name, value, kind)| Param {
                    name,
                    value: round_for_type(value, kind),
                    kind,
                })
                .collect(),
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|p| p.name == name)
    }

    /// Value of a parameter; every name used by the simulator is in the table, so the
    /// fallback is never hit in practice.
    pub(super) fn get(&self, name: &str) -> f64 {
        self.index_of(name)
            .map(|i| f64::from(self.list[i].value))
            .unwrap_or(0.0)
    }

    fn count(&self) -> u16 {
        u16::try_from(self.list.len()).unwrap_or(u16::MAX)
    }

    fn value_message(&self, index: usize) -> Option<MavMessage> {
        let p = self.list.get(index)?;
        Some(MavMessage::PARAM_VALUE(PARAM_VALUE_DATA {
            param_value: p.value,
            param_count: self.count(),
            param_index: u16::try_from(index).unwrap_or(u16::MAX),
            param_id: CharArray::from(p.name),
            param_type: p.kind,
        }))
    }
}

/// Integer parameters hold integers: round and clamp the way AP_Param stores them.
fn round_for_type(value: f32, kind: MavParamType) -> f32 {
    let (lo, hi) = match kind {
        MavParamType::MAV_PARAM_TYPE_INT8 => (f32::from(i8::MIN), f32::from(i8::MAX)),
        MavParamType::MAV_PARAM_TYPE_UINT8 => (0.0, f32::from(u8::MAX)),
        MavParamType::MAV_PARAM_TYPE_INT16 => (f32::from(i16::MIN), f32::from(i16::MAX)),
        MavParamType::MAV_PARAM_TYPE_UINT16 => (0.0, f32::from(u16::MAX)),
        MavParamType::MAV_PARAM_TYPE_INT32 => (i32::MIN as f32, i32::MAX as f32),
        MavParamType::MAV_PARAM_TYPE_UINT32 => (0.0, u32::MAX as f32),
        _ => return value,
    };
    value.round().clamp(lo, hi)
}

impl Copter {
    /// PARAM_REQUEST_LIST: every parameter, in index order.
    pub(super) fn send_param_list(&self, out: &mut Vec<MavMessage>) {
        out.extend((0..self.params.list.len()).filter_map(|i| self.params.value_message(i)));
    }

    /// PARAM_REQUEST_READ, by index or (with a negative index) by name.
    pub(super) fn handle_param_read(&self, r: &PARAM_REQUEST_READ_DATA, out: &mut Vec<MavMessage>) {
        let index = if r.param_index >= 0 {
            Some(r.param_index as usize)
        } else {
            r.param_id
                .to_str()
                .ok()
                .and_then(|name| self.params.index_of(name))
        };
        // Unknown names and indices get no reply, as in ArduPilot.
        if let Some(m) = index.and_then(|i| self.params.value_message(i)) {
            out.push(m);
        }
    }

    /// PARAM_SET: stored and echoed with PARAM_VALUE; unknown names are ignored.
    pub(super) fn handle_param_set(&mut self, s: &PARAM_SET_DATA, out: &mut Vec<MavMessage>) {
        let Some(index) = s
            .param_id
            .to_str()
            .ok()
            .and_then(|n| self.params.index_of(n))
        else {
            return;
        };
        if !s.param_value.is_finite() {
            return;
        }
        self.set_param(index, s.param_value);
        if let Some(m) = self.params.value_message(index) {
            out.push(m);
        }
    }

    fn set_param(&mut self, index: usize, value: f32) {
        let Some(p) = self.params.list.get_mut(index) else {
            return;
        };
        p.value = round_for_type(value, p.kind);
        let (name, v) = (p.name, f64::from(p.value));
        match name {
            "SR1_POSITION" => {
                self.retime_stream(GLOBAL_POSITION_INT_DATA::ID, v);
                self.retime_stream(GPS_RAW_INT_DATA::ID, v / 2.0);
            }
            "SR1_EXTRA1" => self.retime_stream(ATTITUDE_DATA::ID, v),
            "SR1_EXTRA2" => self.retime_stream(VFR_HUD_DATA::ID, v),
            "SR1_EXT_STAT" => self.retime_stream(SYS_STATUS_DATA::ID, v),
            _ => {}
        }
    }
}
