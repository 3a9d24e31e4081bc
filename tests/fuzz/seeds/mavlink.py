#!/usr/bin/env python3
"""Writes the MAVLink seeds of the `frame_scanner` and `link_ingest` fuzz targets.

Frames come from pymavlink (tests/peers/requirements.txt pins it), an implementation nobody
here wrote: ArduCopter-like traffic in MAVLink 1 and 2, signed frames, a frame of an id no
dialect of ours defines, and the noise links carry. Run from anywhere:

    python3 tests/fuzz/seeds/mavlink.py
"""

import os
import struct

from pymavlink.dialects.v10 import ardupilotmega as v10
from pymavlink.dialects.v20 import ardupilotmega as v20
from pymavlink import mavutil

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")

STATION = (245, 190)  # [gcs] system_id and component_id defaults


class Sink:
    def write(self, _):
        pass


def link(module, sysid=1, compid=1, key=None):
    mav = module.MAVLink(Sink(), srcSystem=sysid, srcComponent=compid)
    if module is v20:
        mav.WIRE_PROTOCOL_VERSION = "2.0"
    if key is not None:
        mav.signing.secret_key = key
        mav.signing.sign_outgoing = True
        mav.signing.link_id = 1
        mav.signing.timestamp = 0x123456789A
    return mav


def copter(mav):
    """One second of an armed ArduCopter flying a survey."""
    m = mav
    ap = mavutil.mavlink
    out = [
        m.heartbeat_encode(ap.MAV_TYPE_QUADROTOR, ap.MAV_AUTOPILOT_ARDUPILOTMEGA,
                           ap.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | ap.MAV_MODE_FLAG_SAFETY_ARMED,
                           3, ap.MAV_STATE_ACTIVE),
        m.global_position_int_encode(120_000, 382_919_000, -1_224_580_000, 78_000, 30_000,
                                     600, 30, -5, 9_000),
        m.sys_status_encode(0, 0, 0, 500, 24_000, 1_800, 76, 0, 0, 0, 0, 0, 0),
        m.gps_raw_int_encode(120_000_000, 3, 382_919_000, -1_224_580_000, 78_000,
                             90, 120, 600, 9_000, 16),
        m.attitude_encode(120_000, 0.01, -0.02, 1.57, 0.0, 0.0, 0.1),
        m.vfr_hud_encode(6.0, 6.0, 90, 45, 78.0, 0.1),
        m.system_time_encode(1_790_000_000_000_000, 120_000),
        m.mission_current_encode(3),
        m.radio_status_encode(180, 170, 90, 40, 38, 0, 0),
        m.statustext_encode(ap.MAV_SEVERITY_WARNING, b"PreArm: fuzz seed"),
    ]
    if mav is not None and hasattr(m, "battery_status_encode"):
        out.append(m.battery_status_encode(0, 0, 0, 2_500, [4_000] * 10, 1_800, 1_000, 9_000, 76))
    return [msg.pack(m) for msg in out]


def identity(mav):
    m, ap = mav, mavutil.mavlink
    return [
        m.autopilot_version_encode(0, 0x04_07_00_00, 0, 0, 0, b"\0" * 8, b"\0" * 8,
                                   b"\0" * 8, 0x1209, 0x5741, 0x0011_2233_4455_6677)
        .pack(m),
        m.home_position_encode(382_919_000, -1_224_580_000, 78_000, 0, 0, 0,
                               [1, 0, 0, 0], 0, 0, 0).pack(m),
    ]


def answers(mav):
    """What a vehicle answers the station with: acks, parameters, mission items."""
    m, ap = mav, mavutil.mavlink
    sys, comp = STATION
    out = [
        m.command_ack_encode(ap.MAV_CMD_COMPONENT_ARM_DISARM, ap.MAV_RESULT_ACCEPTED, 0, 0,
                             sys, comp),
        m.command_ack_encode(ap.MAV_CMD_NAV_TAKEOFF, ap.MAV_RESULT_IN_PROGRESS, 50, 0, sys,
                             comp),
        m.param_value_encode(b"RTL_ALT", 1500.0, ap.MAV_PARAM_TYPE_INT32, 3, 0),
        m.param_value_encode(b"WPNAV_SPEED", 500.0, ap.MAV_PARAM_TYPE_REAL32, 3, 1),
        m.param_value_encode(b"SYSID_THISMAV", 1.0, ap.MAV_PARAM_TYPE_INT8, 3, 2),
        m.mission_count_encode(sys, comp, 2, 0),
        m.mission_item_int_encode(sys, comp, 0, ap.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                                  ap.MAV_CMD_NAV_TAKEOFF, 0, 1, 0, 0, 0, 0, 382_919_000,
                                  -1_224_580_000, 30.0, 0),
        m.mission_item_int_encode(sys, comp, 1, ap.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                                  ap.MAV_CMD_NAV_WAYPOINT, 0, 1, 0, 0, 0, 0, 382_920_000,
                                  -1_224_580_000, 30.0, 0),
        m.mission_request_int_encode(sys, comp, 0, 0),
        m.mission_ack_encode(sys, comp, ap.MAV_MISSION_ACCEPTED, 0),
    ]
    return [msg.pack(m) for msg in out]


def other_gcs(mav):
    """QGroundControl (255) asking vehicle 1 for data and sending it a command."""
    m, ap = mav, mavutil.mavlink
    return [
        m.heartbeat_encode(ap.MAV_TYPE_GCS, ap.MAV_AUTOPILOT_INVALID, 0, 0, 0).pack(m),
        m.request_data_stream_encode(1, 1, ap.MAV_DATA_STREAM_POSITION, 10, 1).pack(m),
        m.command_long_encode(1, 1, ap.MAV_CMD_SET_MESSAGE_INTERVAL, 0, 33, 100_000, 0, 0,
                              0, 0, 0).pack(m),
        m.param_set_encode(1, 1, b"RTL_ALT", 2000.0, ap.MAV_PARAM_TYPE_INT32).pack(m),
    ]


def unknown_id_frame():
    """A MAVLink 2 frame of message id 0xABCDE, which no dialect of ours defines."""
    payload = bytes([1, 2, 3, 4])
    head = bytes([0xFD, len(payload), 0, 0, 9, 7, 1, 0xDE, 0xBC, 0x0A])
    crc = mavutil.mavlink.x25crc(head[1:] + payload)
    crc.accumulate(bytes([0]))
    return head + payload + struct.pack("<H", crc.crc)


def tunnelled(mav, inner):
    """A frame carrying a whole frame in its payload (SERIAL_CONTROL data)."""
    data = list(inner[:70]) + [0] * (70 - len(inner[:70]))
    return mav.serial_control_encode(10, 0, 0, 0, len(inner[:70]), data).pack(mav)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tcp(data):
    """link_ingest: bytes on its TCP link, in chunks of at most 224."""
    out = b""
    for i in range(0, len(data), 200):
        chunk = data[i:i + 200]
        out += bytes([len(chunk) - 1]) + chunk
    return out


def udp(datagram):
    return bytes([0xE0, len(datagram) >> 8, len(datagram) & 0xFF]) + datagram


def act(n, vehicle=1, arg=0):
    return bytes([0xE1 + n, vehicle, arg])


def tick(arg=5):
    return act(0, 0, arg)


def main():
    v2 = link(v20)
    v1 = link(v10)
    qgc = link(v20, 255, 190)
    key = bytes([0x42] * 32)
    signed = link(v20, key=key)

    flight2 = b"".join(copter(v2))
    flight1 = b"".join(copter(v1))
    ident = b"".join(identity(v2))
    acks = b"".join(answers(v2))
    gcs = b"".join(other_gcs(qgc))
    signed_flight = b"".join(copter(signed))
    unknown = unknown_id_frame()
    hb = copter(v2)[0]

    # frame_scanner: control byte (bit 7 datagrams, bits 4-6 largest chunk, 0-3 seed).
    seeds = {
        "v2_flight_whole": (0x70, flight2),
        "v2_flight_bytewise": (0x00, flight2),
        "v1_flight_chunks": (0x35, flight1),
        "v2_identity_datagrams": (0xF0, ident),
        "answers_stream": (0x47, acks),
        "other_gcs_datagram": (0xE2, gcs),
        "signed_flight": (0x51, signed_flight),
        "unknown_id": (0x70, unknown + hb),
        "noise_between_frames": (0x63, b"\x00\x13\x37" + hb + b"\xfd\xc8\x00\x00" + hb
                                 + bytes(range(256)) + hb),
        "stray_marker_then_frame": (0x70, bytes([0xFE, 250, 1, 2, 3]) + hb),
        "truncated_datagram": (0xF4, hb[:-3] + hb),
        "corrupt_crc": (0x70, hb[:-1] + bytes([hb[-1] ^ 0xFF]) + hb),
        "tunnelled_frame": (0x22, tunnelled(v2, hb)),
    }
    for name, (control, data) in seeds.items():
        write("frame_scanner", name, bytes([control]) + data)

    # link_ingest: operations (see fuzz_targets/link_ingest.rs).
    hello = tcp(flight2) + tick() + tcp(ident) + tick(60)
    sessions = {
        "flight_tcp": hello + tcp(flight2) + tick(50) + tcp(flight2),
        "flight_udp_v1": udp(flight1) + tick() + udp(flight1),
        "arm_and_ack": hello + act(1) + tcp(answers(v2)[0]) + act(3, 1, 30) + tcp(answers(v2)[1]),
        "params": hello + act(17) + tcp(b"".join(answers(v2)[2:5])) + tick(100) + act(19, 1, 15)
        + tcp(answers(v2)[2]),
        "mission_download": hello + act(13) + tcp(b"".join(answers(v2)[5:8])) + tick(10),
        "mission_upload": hello + act(14, 1, 3) + tcp(b"".join(answers(v2)[8:10])) + tick(100)
        + tick(100),
        "other_gcs": hello + udp(gcs) + tick(),
        "signing": hello + act(21, 1, 0x42) + tcp(signed_flight) + tcp(flight2) + tick(60),
        "link_lost": hello + tick(255) + tick(255) + tick(255) + tcp(flight2),
        "noise": hello + tcp(bytes(range(256))) + udp(b"\xfd" * 40 + hb),
    }
    # Found by link_ingest: a key installed on a vehicle heard in MAVLink 1 made the station
    # encode SETUP_SIGNING (id 256) as MAVLink 1, and the mavlink crate panicked.
    sessions["regression_setup_signing_mavlink1"] = (
        tcp(copter(v1)[0]) + act(21, 1, 0x42) + tick() + tick(60))
    for name, data in sessions.items():
        write("link_ingest", name, data)


if __name__ == "__main__":
    main()
