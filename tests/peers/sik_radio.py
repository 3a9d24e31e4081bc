"""A pair of SiK telemetry radios between the station and several vehicles, as the station's
serial port sees them: a pty whose far end this drives at 57600 baud (5,760 bytes/s each way,
8N1), one half-duplex air link shared by both directions, and the ground radio's transmit
buffer, which drops whole frames when the station writes faster than the air carries them.
With --report the ground radio injects RADIO_STATUS (system 51, component 68, as SiK does) into
what it hands the station once a second, its txbuf the buffer's free space in percent.

Vehicles (pymavlink autopilots) reach the air side over UDP (--connect udpout:127.0.0.1:PORT);
what comes up from the station goes to every vehicle heard, as a multipoint air link does.
Framing and RADIO_STATUS come from pymavlink; nothing here is the daemon's code.

Prints {"event": "ready", "station": PTY, "vehicle_port": PORT}; "stats" on stdin prints what
it carried: frames up (station to vehicles) and down, frames each buffer dropped (and how many
of the ground's were COMMAND_LONG/COMMAND_INT), the fullest the ground buffer got, the
RADIO_STATUS it sent and the txbuf of each, and the longest this loop was away (a slow machine
stalling the simulated radio).
"""
import argparse
import json
import os
import select
import socket
import sys
import time
import tty

os.environ.setdefault("MAVLINK20", "1")
from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

COMMANDS = {mavlink.MAVLINK_MSG_ID_COMMAND_LONG, mavlink.MAVLINK_MSG_ID_COMMAND_INT}


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--baud", type=int, default=57600)
    p.add_argument("--air-bytes-per-s", type=int, default=6000,
                   help="what the air link carries, both directions together (SiK AIR_SPEED 64 less framing)")
    p.add_argument("--buffer", type=int, default=2048, help="each radio's transmit buffer, bytes")
    p.add_argument("--report", action="store_true", help="inject RADIO_STATUS toward the station")
    a = p.parse_args()
    uart = a.baud / 10.0

    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    vehicles = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    vehicles.bind(("127.0.0.1", 0))
    vehicles.setblocking(False)
    emit(event="ready", station=os.ttyname(slave), vehicle_port=vehicles.getsockname()[1])

    parse_up = mavlink.MAVLink(None)
    parse_up.robust_parsing = True
    parse_down = mavlink.MAVLink(None)
    parse_down.robust_parsing = True
    report = mavlink.MAVLink(None, srcSystem=51, srcComponent=68)

    up, down = [], []            # frames in each radio's transmit buffer
    up_bytes = down_bytes = 0
    to_station = []              # frames through the air, waiting for the ground's serial line
    to_station_bytes = 0
    sent_of_first = 0            # bytes of to_station[0] already on the serial line
    peers = set()
    stats = dict(up_in=0, up_out=0, up_dropped=0, up_dropped_commands=0, down_in=0, down_out=0,
                 down_dropped=0, fullest_up=0, reports=0, longest_stall_ms=0.0, txbuf=[])
    uart_in = uart_out = air = 0.0
    turn_up = True
    last = time.monotonic()
    next_report = last + 1.0
    while True:
        ready, _, _ = select.select([master, vehicles, sys.stdin], [], [], 0.002)
        now = time.monotonic()
        dt, last = now - last, now
        stats["longest_stall_ms"] = max(stats["longest_stall_ms"], round(dt * 1000, 1))
        uart_in = min(uart_in + uart * dt, 256.0)
        uart_out = min(uart_out + uart * dt, 256.0)
        air = min(air + a.air_bytes_per_s * dt, 300.0)

        # The station's serial line into the ground radio, at the baud rate.
        if uart_in >= 1:
            try:
                data = os.read(master, int(uart_in))
            except (BlockingIOError, OSError):
                data = b""
            uart_in -= len(data)
            for m in parse_up.parse_buffer(data) or []:
                raw = m.get_msgbuf()
                stats["up_in"] += 1
                if up_bytes + len(raw) > a.buffer:
                    stats["up_dropped"] += 1
                    if m.get_msgId() in COMMANDS:
                        stats["up_dropped_commands"] += 1
                    continue
                up.append(raw)
                up_bytes += len(raw)
                stats["fullest_up"] = max(stats["fullest_up"], up_bytes)

        # Vehicles into the air radio.
        if vehicles in ready:
            while True:
                try:
                    data, addr = vehicles.recvfrom(65536)
                except BlockingIOError:
                    break
                peers.add(addr)
                for m in parse_down.parse_buffer(data) or []:
                    raw = m.get_msgbuf()
                    stats["down_in"] += 1
                    if down_bytes + len(raw) > a.buffer:
                        stats["down_dropped"] += 1
                        continue
                    down.append(raw)
                    down_bytes += len(raw)

        # The air: one direction at a time, turn about when both have something.
        while True:
            order = (up, down) if turn_up else (down, up)
            queue = order[0] if order[0] else order[1]
            if not queue or air < len(queue[0]):
                break
            raw = queue.pop(0)
            air -= len(raw)
            if queue is up:
                up_bytes -= len(raw)
                stats["up_out"] += 1
                for peer in peers:
                    vehicles.sendto(raw, peer)
            else:
                down_bytes -= len(raw)
                stats["down_out"] += 1
                if to_station_bytes + len(raw) > a.buffer:
                    stats["down_dropped"] += 1
                else:
                    to_station.append(raw)
                    to_station_bytes += len(raw)
            turn_up = queue is not up

        if a.report and now >= next_report:
            next_report = now + 1.0
            free = 100 * (a.buffer - up_bytes) // a.buffer
            msg = mavlink.MAVLink_radio_status_message(200, 190, free, 40, 40, 0, 0)
            # Next out, after the frame already on the line.
            raw = msg.pack(report)
            to_station.insert(1 if sent_of_first else 0, raw)
            to_station_bytes += len(raw)
            stats["reports"] += 1
            stats["txbuf"].append(free)

        # The ground radio's serial line to the station, at the baud rate.
        while to_station and uart_out >= 1:
            first = to_station[0]
            n = min(len(first) - sent_of_first, int(uart_out))
            try:
                written = os.write(master, first[sent_of_first:sent_of_first + n])
            except (BlockingIOError, OSError):
                break
            uart_out -= written
            sent_of_first += written
            if sent_of_first == len(first):
                to_station.pop(0)
                to_station_bytes -= len(first)
                sent_of_first = 0
            if written < n:
                break

        if sys.stdin in ready:
            line = sys.stdin.readline()
            if not line:
                return
            if line.strip() == "stats":
                emit(event="stats", **stats)


if __name__ == "__main__":
    main()
