"""A ground station that keeps the uplink busy: PARAM_REQUEST_READ by a name no vehicle has (so
nothing comes back and all the load is uplink), round-robin over --targets, at --hz, plus its
HEARTBEAT once a second, as system 255. Written with pymavlink; prints {"event": "ready"} and,
on stdin EOF or "stop", {"event": "sent", "requests": N, "values": M} (PARAM_VALUEs heard)."""
import argparse
import json
import os
import select
import sys
import time

os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True)
    p.add_argument("--hz", type=float, default=50)
    p.add_argument("--targets", default="1")
    a = p.parse_args()
    targets = [int(t) for t in a.targets.split(",")]
    m = mavutil.mavlink_connection(a.connect, source_system=255, source_component=190)
    print(json.dumps({"event": "ready"}), flush=True)
    sent = values = 0
    start = time.monotonic()
    next_beat = start
    while True:
        now = time.monotonic()
        if now >= next_beat:
            m.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_GCS, mavutil.mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 0)
            next_beat += 1.0
        due = int((now - start) * a.hz)
        while sent < due:
            target = targets[sent % len(targets)]
            # A name the vehicle does not have: no answer comes back, so the load is all uplink.
            m.mav.param_request_read_send(target, 1, b"GCS_CHATTER", -1)
            sent += 1
        while m.recv_match(type="PARAM_VALUE", blocking=False) is not None:
            values += 1
        ready, _, _ = select.select([sys.stdin], [], [], 0.005)
        if ready:
            line = sys.stdin.readline()
            if not line or line.strip() == "stop":
                print(json.dumps({"event": "sent", "requests": sent, "values": values}), flush=True)
                return


if __name__ == "__main__":
    main()
