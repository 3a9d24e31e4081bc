"""Reads a .tlog with pymavlink and prints the timestamps it finds as JSON: how many messages,
the first and last (Unix microseconds), and how often a timestamp went backwards."""
import json
import os
import sys

os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402

log = mavutil.mavlink_connection(sys.argv[1])
count, first, last, backwards = 0, None, None, 0
while True:
    msg = log.recv_match()
    if msg is None:
        break
    if msg.get_type() == "BAD_DATA":
        continue
    t = int(round(msg._timestamp * 1e6))
    if last is not None and t < last:
        backwards += 1
    first = t if first is None else first
    last = t
    count += 1
print(json.dumps({"count": count, "first_us": first, "last_us": last, "backwards": backwards}))
