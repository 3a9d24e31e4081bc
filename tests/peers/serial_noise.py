"""Writes good MAVLink frames interleaved with random bytes and corrupted frames to a serial
device (one end of a pty pair). Prints {"good": N, "corrupted": M} when done."""
import json
import os
import random
import sys

os.environ.setdefault("MAVLINK20", "1")
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402


def main():
    path, sysid, good_count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(1234)
    mav = mavlink.MAVLink(None, srcSystem=sysid, srcComponent=1)
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    good = corrupted = 0
    for i in range(good_count):
        if i % 10 == 0:
            frame = mav.heartbeat_encode(2, 3, 1, 5, 4).pack(mav)
        else:
            frame = mav.global_position_int_encode(i, 382919000 + i, -1224580000, 100000, 30000, 0, 0, 0, 9000).pack(mav)
        os.write(fd, frame)
        good += 1
        r = rng.random()
        if r < 0.3:
            os.write(fd, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))))
        elif r < 0.5:
            bad = bytearray(mav.global_position_int_encode(0, 1, 2, 3, 4, 0, 0, 0, 0).pack(mav))
            bad[rng.randint(10, len(bad) - 3)] ^= 0x5A
            os.write(fd, bytes(bad))
            corrupted += 1
    os.close(fd)
    print(json.dumps({"good": good, "corrupted": corrupted}), flush=True)


if __name__ == "__main__":
    main()
