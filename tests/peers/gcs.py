"""A pymavlink ground station: listens where the daemon's udpout sends, reports the vehicles it
hears, sends one COMMAND_LONG to a target and waits for its COMMAND_ACK, asks for data
streams and waits for each vehicle's position, or sets a parameter as QGroundControl does
(PARAM_SET, then the vehicle's PARAM_VALUE answer).

Prints one JSON line: {"heartbeats": {sysid: count}, "positions": {...}, "ack": result|null,
"param": {name, value}|null}.
"""
import argparse
import json
import os
import time

os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True, help="udpin:IP:PORT")
    p.add_argument("--expect", type=int, nargs="+", required=True, help="vehicle sysids to hear")
    p.add_argument("--command-target", type=int, help="0 broadcasts the command to every vehicle")
    p.add_argument("--stream", action="append", default=[],
                   help="ID:HZ: once every vehicle is heard, ask each for this data stream, as "
                        "QGroundControl does on connecting to an ArduPilot")
    p.add_argument("--param-set", metavar="SYSID:NAME=VALUE",
                   help="once the vehicle is heard, set one parameter and wait for its answer")
    p.add_argument("--signing-key", metavar="HEX", help="sign what it sends with this key")
    p.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args()

    m = mavutil.mavlink_connection(a.listen, source_system=255, source_component=190)
    if a.signing_key:
        m.setup_signing(bytes.fromhex(a.signing_key), sign_outgoing=True,
                        allow_unsigned_callback=lambda mav, msg_id: True)
    heartbeats, positions, ack, param = {}, {}, None, None
    # Asked for data streams, it waits to hear each vehicle's position, not just a heartbeat.
    want_positions = bool(a.stream)
    param_asked = 0.0
    deadline = time.time() + a.timeout
    sent_command = False
    last_hb = 0.0
    while time.time() < deadline:
        if time.time() - last_hb > 0.5:
            # A GCS heartbeat: lets the daemon learn where we are, as QGroundControl does.
            m.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_GCS, mavutil.mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 0)
            last_hb = time.time()
        msg = m.recv_match(blocking=True, timeout=0.2)
        if msg is None:
            continue
        t = msg.get_type()
        src = msg.get_srcSystem()
        if t == "HEARTBEAT" and msg.type != mavutil.mavlink.MAV_TYPE_GCS:
            heartbeats[src] = heartbeats.get(src, 0) + 1
        elif t == "GLOBAL_POSITION_INT":
            positions[src] = [msg.lat / 1e7, msg.lon / 1e7]
        elif t == "PARAM_VALUE" and a.param_set and msg.param_id == a.param_set.split(":")[1].split("=")[0]:
            param = {"name": msg.param_id, "value": msg.param_value}
        elif t == "COMMAND_ACK" and sent_command and msg.command == mavutil.mavlink.MAV_CMD_DO_SET_MODE:
            ack = {"from": src, "command": msg.command, "result": msg.result}
        heard_all = all(s in heartbeats for s in a.expect)
        if heard_all and a.stream:
            for target in a.expect:
                for spec in a.stream:
                    stream, hz = (int(x) for x in spec.split(":"))
                    m.mav.request_data_stream_send(target, 1, stream, hz, 1)
            a.stream = []
        if heard_all and a.command_target is not None and not sent_command:
            m.mav.command_long_send(a.command_target, 1, mavutil.mavlink.MAV_CMD_DO_SET_MODE, 0, 1, 4, 0, 0, 0, 0, 0)
            sent_command = True
        if heard_all and a.param_set and param is None and time.time() - param_asked > 1.0:
            target, change = a.param_set.split(":")
            name, value = change.split("=")
            m.mav.param_set_send(int(target), 1, name.encode(), float(value),
                                 mavutil.mavlink.MAV_PARAM_TYPE_REAL32)
            param_asked = time.time()
        if (heard_all and (a.command_target is None or ack is not None) and (not a.param_set or param)
                and (not want_positions or all(s in positions for s in a.expect))):
            break
    print(json.dumps({"heartbeats": heartbeats, "positions": positions, "ack": ack, "param": param}),
          flush=True)


if __name__ == "__main__":
    main()
