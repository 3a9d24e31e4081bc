"""Reads a .tlog with pymavlink and prints {"TYPE": count, ...} as JSON."""
import json
import os
import sys

os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402

counts = {}
log = mavutil.mavlink_connection(sys.argv[1])
while True:
    msg = log.recv_match()
    if msg is None:
        break
    if msg.get_type() == "BAD_DATA":
        counts["BAD_DATA"] = counts.get("BAD_DATA", 0) + 1
        continue
    key = "%s:%d" % (msg.get_type(), msg.get_srcSystem())
    counts[key] = counts.get(key, 0) + 1
print(json.dumps(counts))
