"""A pymavlink vehicle that streams without being asked (as an ArduPilot whose stream rates
were saved earlier): heartbeats and positions, acks COMMAND_LONG, reports what it heard.

Prints one JSON object per line on stdout: {"event": "ready"}, {"event": "command", ...}
({"event": "request", ...} for a ground station asking for data).
Reads commands on stdin, one per line: "battery PCT" changes the reported charge, "text SEV
MESSAGE" sends a STATUSTEXT, "gps FIX EPH" a GPS_RAW_INT.
"""
import argparse
import json
import os
import select
import sys
import time

# pymavlink picks the wire version from the environment at import time.
if "--mavlink1" in sys.argv:
    os.environ.pop("MAVLINK20", None)
else:
    os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402

REQUESTS = {
    mavutil.mavlink.MAV_CMD_REQUEST_MESSAGE, mavutil.mavlink.MAV_CMD_SET_MESSAGE_INTERVAL,
    mavutil.mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, mavutil.mavlink.MAV_CMD_GET_HOME_POSITION,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True, help="pymavlink connection string")
    p.add_argument("--sysid", type=int, required=True)
    p.add_argument("--lat", type=float, required=True)
    p.add_argument("--lon", type=float, required=True)
    p.add_argument("--alt", type=float, default=120.0)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--positions", type=int, default=0, help="stop after this many (0 = forever)")
    p.add_argument("--heartbeats", type=int, default=0, help="with --positions: exact heartbeats")
    p.add_argument("--baud", type=int, default=57600)
    p.add_argument("--mavlink1", action="store_true", help="speak MAVLink 1 (older radios, APM)")
    p.add_argument("--also", help="a second connection that gets every message too (a second radio)")
    p.add_argument("--uid", type=lambda s: int(s, 16), default=0, help="AUTOPILOT_VERSION uid, hex")
    p.add_argument("--battery", type=int, default=-1, help="SYS_STATUS battery_remaining (-1: none)")
    p.add_argument("--speed", type=float, default=0.0, help="metres per second northward")
    a = p.parse_args()

    m = mavutil.mavlink_connection(a.connect, source_system=a.sysid, source_component=1, baud=a.baud)
    links = [m]
    if a.also:
        links.append(mavutil.mavlink_connection(a.also, source_system=a.sysid, source_component=1))

    class Both:
        """Sends each message on every link with one sequence number, as one radio heard twice."""
        def __getattr__(self, name):
            def send(*args):
                buf = getattr(m.mav, name.replace("_send", "_encode"))(*args).pack(m.mav)
                for link in links:
                    link.write(buf)
                m.mav.seq = (m.mav.seq + 1) % 256
            return send
    mav = Both()
    battery = a.battery
    assert (m.WIRE_PROTOCOL_VERSION == "1.0") == a.mavlink1, m.WIRE_PROTOCOL_VERSION
    print(json.dumps({"event": "ready"}), flush=True)
    # Every frame it sends, by type (the acks too: a test waits for all of them to be stored).
    sent = {"HEARTBEAT": 0, "GLOBAL_POSITION_INT": 0, "ATTITUDE": 0, "COMMAND_ACK": 0}
    period = 1.0 / a.rate
    t0 = time.time()
    i = 0
    while a.positions == 0 or sent["GLOBAL_POSITION_INT"] < a.positions or sent["HEARTBEAT"] < a.heartbeats:
        if (a.heartbeats and sent["HEARTBEAT"] < a.heartbeats) or (not a.heartbeats and i % max(1, int(a.rate)) == 0):
            mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_QUADROTOR, mavutil.mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA,
                               mavutil.mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 5, mavutil.mavlink.MAV_STATE_ACTIVE)
            sent["HEARTBEAT"] += 1
            if a.uid:
                mav.autopilot_version_send(0, 0, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8, 0, 0, a.uid)
            if battery >= 0:
                mav.sys_status_send(0, 0, 0, 500, 15000, 1000, battery, 0, 0, 0, 0, 0, 0)
        if a.positions == 0 or sent["GLOBAL_POSITION_INT"] < a.positions:
            ms = int((time.time() - t0) * 1000)
            lat = a.lat + a.speed * ms / 1000.0 / 111320.0
            mav.global_position_int_send(ms, int(lat * 1e7), int(a.lon * 1e7), int(a.alt * 1000), 30000, 100, -50, 0, 9000)
            mav.attitude_send(ms, 0.01, -0.02, 1.57, 0, 0, 0)
            sent["GLOBAL_POSITION_INT"] += 1
            sent["ATTITUDE"] += 1
        i += 1
        while select.select([sys.stdin], [], [], 0)[0]:
            line = sys.stdin.readline()
            if not line:
                break
            words = line.split()
            if words[:1] == ["text"]:
                # "text SEVERITY MESSAGE…": a STATUSTEXT, as an autopilot reports a failsafe.
                mav.statustext_send(int(words[1]), " ".join(words[2:]).encode())
                print(json.dumps({"event": "text", "severity": int(words[1])}), flush=True)
            elif words[:1] == ["gps"]:
                # "gps FIX HDOP×100": the fix the vehicle reports from now on.
                mav.gps_raw_int_send(0, int(words[1]), 0, 0, 0, int(words[2]), 65535, 0, 65535, 7)
                print(json.dumps({"event": "gps", "fix": int(words[1])}), flush=True)
            elif words[:1] == ["battery"]:
                battery = int(words[1])
                mav.sys_status_send(0, 0, 0, 500, 15000, 1000, battery, 0, 0, 0, 0, 0, 0)
                print(json.dumps({"event": "battery", "pct": battery}), flush=True)
        deadline = time.time() + period
        while True:
            left = deadline - time.time()
            if left <= 0:
                break
            msg = m.recv_match(type=["COMMAND_LONG"], blocking=True, timeout=left)
            if msg is not None and msg.get_srcSystem() != a.sysid:
                # A station asking for data (it already streams everything) is a "request".
                kind = "request" if msg.command in REQUESTS else "command"
                print(json.dumps({"event": kind, "command": msg.command, "target_system": msg.target_system,
                                  "from": msg.get_srcSystem()}), flush=True)
                # Addressed to the asker, as ArduPilot does (MAVLink 1's ack has no target).
                if a.mavlink1:
                    mav.command_ack_send(msg.command, mavutil.mavlink.MAV_RESULT_ACCEPTED)
                else:
                    mav.command_ack_send(msg.command, mavutil.mavlink.MAV_RESULT_ACCEPTED, 0, 0,
                                         msg.get_srcSystem(), msg.get_srcComponent())
                sent["COMMAND_ACK"] += 1
    print(json.dumps({"event": "done", "sent": sent}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
