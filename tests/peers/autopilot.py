"""An autopilot written with pymavlink, behaving as a fresh ArduPilot (or PX4) does towards
ground stations; nothing in it comes from the daemon's code.

Like a fresh ArduPilot it sends only HEARTBEAT and SYS_STATUS (1 Hz each) until a ground
station asks for more:
- REQUEST_DATA_STREAM sets a stream group's rate for everyone on the port (the last request
  wins): POSITION -> GLOBAL_POSITION_INT, EXTENDED_STATUS -> GPS_RAW_INT and MISSION_CURRENT,
  EXTRA1 -> ATTITUDE, EXTRA2 -> VFR_HUD, EXTRA3 -> SYSTEM_TIME; ALL sets every group.
  With --autopilot px4 it is ignored, as PX4 does.
- MAV_CMD_SET_MESSAGE_INTERVAL sets one message's rate (--no-message-interval: UNSUPPORTED).
- MAV_CMD_REQUEST_MESSAGE sends AUTOPILOT_VERSION (with --uid and --firmware) or
  HOME_POSITION once; ArduPilot has no home before a GPS fix (--no-home: it says nothing).
Commands: arm and disarm change the armed flag its heartbeat reports, DO_SET_MODE its custom
mode; takeoff answers IN_PROGRESS (0 %, then 50 %) and ACCEPTED a second later, as PX4 does
for long commands; anything else is accepted. --deny, --fail, --unsupported and --ignore
(a command number, repeatable) make it answer DENIED, FAILED, UNSUPPORTED or nothing.
Acks carry the asker as their target, as ArduPilot's do.
Missions, fences and rally points: the mission protocol as ArduPilot plays it (it asks for each
item with MISSION_REQUEST_INT and asks again after 0.5 s of silence; an upload from a second
ground station while one is under way is DENIED; download, clear, set current).

Prints one JSON object per line: ready; gcs_heartbeat (each, with its monotonic time);
stream (each REQUEST_DATA_STREAM: from, stream, rate); interval (message, hz, from);
request (message, from); command (any other COMMAND_LONG/INT: command, from, confirmation,
params, and x, y, z for COMMAND_INT); mission_stored (type, count, from) when an upload
completes; rebooted.
Reads lines on stdin: "reboot" (rates back to zero, boot time from zero, as a power cycle),
"silence SECONDS" (sends nothing and ignores everything, as a radio out of range).
"""
import argparse
import json
import os
import select
import sys
import time

os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402

mavlink = mavutil.mavlink

# ArduPilot's stream groups and the messages this vehicle sends in each.
GROUPS = {
    mavlink.MAV_DATA_STREAM_POSITION: ["GLOBAL_POSITION_INT"],
    mavlink.MAV_DATA_STREAM_EXTENDED_STATUS: ["GPS_RAW_INT", "MISSION_CURRENT"],
    mavlink.MAV_DATA_STREAM_EXTRA1: ["ATTITUDE"],
    mavlink.MAV_DATA_STREAM_EXTRA2: ["VFR_HUD"],
    mavlink.MAV_DATA_STREAM_EXTRA3: ["SYSTEM_TIME"],
}
IDS = {
    "GLOBAL_POSITION_INT": 33, "GPS_RAW_INT": 24, "MISSION_CURRENT": 42, "ATTITUDE": 30,
    "VFR_HUD": 74, "SYSTEM_TIME": 2, "SYS_STATUS": 1, "HEARTBEAT": 0,
}
REQUESTS = {
    mavlink.MAV_CMD_REQUEST_MESSAGE, mavlink.MAV_CMD_SET_MESSAGE_INTERVAL,
    mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES, mavlink.MAV_CMD_GET_HOME_POSITION,
}


def emit(**event):
    print(json.dumps(event), flush=True)


class Autopilot:
    def __init__(self, a):
        self.a = a
        self.m = mavutil.mavlink_connection(a.connect, source_system=a.sysid, source_component=1)
        self.px4 = a.autopilot == "px4"
        self.later = []  # (when, msg, result, progress): answers still to give
        self.lists = {0: [], 1: [], 2: []}  # mission type -> items (dicts of MISSION_ITEM_INT)
        self.receiving = None  # an upload under way: dict(type, count, items, src, asked)
        self.current = 0
        self.reboot()

    def reboot(self):
        self.boot = time.monotonic()
        self.armed = False
        self.custom_mode = 0
        # Hz per message name; HEARTBEAT and SYS_STATUS always go out.
        self.rates = {"HEARTBEAT": 1.0, "SYS_STATUS": 1.0}
        self.next = {}

    def boot_ms(self):
        return int((time.monotonic() - self.boot) * 1000)

    def send(self, name):
        mav, ms = self.m.mav, self.boot_ms()
        a = self.a
        if name == "HEARTBEAT":
            autopilot = mavlink.MAV_AUTOPILOT_PX4 if self.px4 else mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA
            base = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
            if self.armed:
                base |= mavlink.MAV_MODE_FLAG_SAFETY_ARMED
            mav.heartbeat_send(mavlink.MAV_TYPE_QUADROTOR, autopilot, base, self.custom_mode,
                               mavlink.MAV_STATE_ACTIVE if self.armed else mavlink.MAV_STATE_STANDBY)
        elif name == "SYS_STATUS":
            mav.sys_status_send(0, 0, 0, 500, 15800, 1200, 87, 0, 0, 0, 0, 0, 0)
        elif name == "GLOBAL_POSITION_INT":
            mav.global_position_int_send(ms, int(a.lat * 1e7), int(a.lon * 1e7), 152000, 30000, 0, 0, 0, 9000)
        elif name == "GPS_RAW_INT":
            mav.gps_raw_int_send(ms * 1000, 3, int(a.lat * 1e7), int(a.lon * 1e7), 152000, 90, 120, 0, 9000, 14)
        elif name == "MISSION_CURRENT":
            mav.mission_current_send(self.current, len(self.lists[0]))
        elif name == "ATTITUDE":
            mav.attitude_send(ms, 0.0, 0.0, 1.57, 0, 0, 0)
        elif name == "VFR_HUD":
            mav.vfr_hud_send(0, 0, 90, 0, 152, 0)
        elif name == "SYSTEM_TIME":
            mav.system_time_send(int(time.time() * 1e6), ms)

    def ack(self, msg, result, progress=0):
        self.m.mav.command_ack_send(msg.command, result, progress, 0, msg.get_srcSystem(), msg.get_srcComponent())

    def handle(self, msg):
        t = msg.get_type()
        src = msg.get_srcSystem()
        if t == "HEARTBEAT" and msg.type == mavlink.MAV_TYPE_GCS:
            emit(event="gcs_heartbeat", **{"from": src, "comp": msg.get_srcComponent(), "t": time.monotonic()})
        elif t == "REQUEST_DATA_STREAM" and msg.target_system == self.a.sysid:
            emit(event="stream", stream=msg.req_stream_id, rate=msg.req_message_rate,
                 start=msg.start_stop, **{"from": src})
            if self.px4:
                return
            groups = GROUPS if msg.req_stream_id == mavlink.MAV_DATA_STREAM_ALL else \
                {msg.req_stream_id: GROUPS.get(msg.req_stream_id, [])}
            for names in groups.values():
                for name in names:
                    self.rates[name] = float(msg.req_message_rate) if msg.start_stop else 0.0
        elif t in ("COMMAND_LONG", "COMMAND_INT") and msg.target_system == self.a.sysid:
            self.command(msg)
        elif t.startswith("MISSION_") and getattr(msg, "target_system", None) == self.a.sysid:
            self.mission(msg)

    def mission_ack(self, to, mission_type, result):
        self.m.mav.mission_ack_send(to[0], to[1], result, mission_type)

    def request_item(self):
        r = self.receiving
        r["asked"] = time.monotonic()
        self.m.mav.mission_request_int_send(r["src"][0], r["src"][1], len(r["items"]), r["type"])

    def mission(self, msg):
        t, src = msg.get_type(), (msg.get_srcSystem(), msg.get_srcComponent())
        mtype = getattr(msg, "mission_type", 0)
        if t == "MISSION_COUNT":
            if self.receiving and self.receiving["src"] != src:
                self.mission_ack(src, mtype, mavlink.MAV_MISSION_DENIED)
                return
            if msg.count == 0:
                self.lists[mtype] = []
                self.mission_ack(src, mtype, mavlink.MAV_MISSION_ACCEPTED)
                return
            self.receiving = {"type": mtype, "count": msg.count, "items": [], "src": src,
                              "heard": time.monotonic()}
            self.request_item()
        elif t in ("MISSION_ITEM_INT", "MISSION_ITEM"):
            r = self.receiving
            if not r or r["src"] != src or msg.mission_type != r["type"] or msg.seq != len(r["items"]):
                return  # not the item asked for
            r["heard"] = time.monotonic()
            item = {k: getattr(msg, k) for k in (
                "param1", "param2", "param3", "param4", "x", "y", "z", "command", "frame",
                "autocontinue")}
            if t == "MISSION_ITEM":  # degrees as floats, from older ground stations
                item["x"], item["y"] = round(msg.x * 1e7), round(msg.y * 1e7)
            r["items"].append(item)
            if len(r["items"]) < r["count"]:
                self.request_item()
                return
            self.lists[r["type"]] = r["items"]
            self.receiving = None
            self.mission_ack(src, mtype, mavlink.MAV_MISSION_ACCEPTED)
            emit(event="mission_stored", type=mtype, count=len(r["items"]), **{"from": src[0]})
        elif t == "MISSION_REQUEST_LIST":
            self.m.mav.mission_count_send(src[0], src[1], len(self.lists[mtype]), mtype)
        elif t == "MISSION_REQUEST_INT" and not (self.receiving and self.receiving["src"] == src):
            items = self.lists[mtype]
            if msg.seq < len(items):
                i = items[msg.seq]
                self.m.mav.mission_item_int_send(
                    src[0], src[1], msg.seq, i["frame"], i["command"], int(msg.seq == self.current), i["autocontinue"],
                    i["param1"], i["param2"], i["param3"], i["param4"], i["x"], i["y"], i["z"], mtype)
        elif t == "MISSION_CLEAR_ALL":
            self.lists[mtype] = []
            self.mission_ack(src, mtype, mavlink.MAV_MISSION_ACCEPTED)
        elif t == "MISSION_SET_CURRENT":
            self.current = msg.seq
            self.m.mav.mission_current_send(self.current, len(self.lists[0]))

    def command(self, msg):
        src = msg.get_srcSystem()
        c = msg.command
        if c not in REQUESTS:
            params = [msg.param1, msg.param2, msg.param3, msg.param4]
            event = {"event": "command", "command": c, "from": src, "type": msg.get_type(),
                     "params": [None if p != p else p for p in params]}
            if msg.get_type() == "COMMAND_LONG":
                event.update(confirmation=msg.confirmation, param7=msg.param7)
            else:
                event.update(x=msg.x, y=msg.y, z=msg.z, frame=msg.frame)
            emit(**event)
            self.perform(msg)
            return
        if c == mavlink.MAV_CMD_SET_MESSAGE_INTERVAL:
            if self.a.no_message_interval:
                self.ack(msg, mavlink.MAV_RESULT_UNSUPPORTED)
                return
            name = next((n for n, i in IDS.items() if i == int(msg.param1)), None)
            hz = 1e6 / msg.param2 if msg.param2 > 0 else 0.0
            emit(event="interval", message=int(msg.param1), hz=round(hz, 3), **{"from": src})
            if name:
                self.rates[name] = hz
            self.ack(msg, mavlink.MAV_RESULT_ACCEPTED)
            return
        wanted = int(msg.param1) if c == mavlink.MAV_CMD_REQUEST_MESSAGE else \
            148 if c == mavlink.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES else 242
        emit(event="request", message=wanted, **{"from": src, "comp": msg.get_srcComponent()})
        self.ack(msg, mavlink.MAV_RESULT_ACCEPTED)
        if wanted == 148:
            major, minor, patch = (int(x) for x in self.a.firmware.split("."))
            version = (major << 24) | (minor << 16) | (patch << 8) | 255
            self.m.mav.autopilot_version_send(0, version, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8, 0, 0, self.a.uid)
        elif wanted == 242 and not self.a.no_home:
            lat, lon = int(self.a.lat * 1e7), int(self.a.lon * 1e7)
            self.m.mav.home_position_send(lat, lon, 150000, 0, 0, 0, [1, 0, 0, 0], 0, 0, 0)

    def perform(self, msg):
        c, a = msg.command, self.a
        if c in a.ignore:
            return
        for option, result in ((a.deny, mavlink.MAV_RESULT_DENIED), (a.fail, mavlink.MAV_RESULT_FAILED),
                               (a.unsupported, mavlink.MAV_RESULT_UNSUPPORTED)):
            if c in option:
                self.ack(msg, result)
                return
        if c == mavlink.MAV_CMD_COMPONENT_ARM_DISARM:
            self.armed = msg.param1 == 1.0
        elif c == mavlink.MAV_CMD_DO_SET_MODE:
            self.custom_mode = int(msg.param2)
        elif c == mavlink.MAV_CMD_NAV_TAKEOFF:
            self.ack(msg, mavlink.MAV_RESULT_IN_PROGRESS, 0)
            now = time.monotonic()
            self.later += [(now + 0.5, msg, mavlink.MAV_RESULT_IN_PROGRESS, 50),
                           (now + 1.0, msg, mavlink.MAV_RESULT_ACCEPTED, 0)]
            return
        self.ack(msg, mavlink.MAV_RESULT_ACCEPTED)

    def run(self):
        emit(event="ready")
        quiet_until = 0.0
        while True:
            now = time.monotonic()
            if now >= quiet_until:
                for name, hz in list(self.rates.items()):
                    if hz <= 0:
                        continue
                    if now >= self.next.get(name, 0.0):
                        self.send(name)
                        self.next[name] = max(self.next.get(name, now) + 1.0 / hz, now)
            r = self.receiving
            if r and now - r["heard"] > 8:
                self.receiving = None  # the ground station gave up, as ArduPilot assumes
            elif r and now - r["asked"] > 0.5:
                self.request_item()
            for answer in [x for x in self.later if x[0] <= now]:
                self.later.remove(answer)
                self.ack(answer[1], answer[2], answer[3])
            msg = self.m.recv_match(blocking=True, timeout=0.01)
            while msg is not None:
                if time.monotonic() >= quiet_until:
                    self.handle(msg)
                msg = self.m.recv_match(blocking=False)
            while select.select([sys.stdin], [], [], 0)[0]:
                words = sys.stdin.readline().split()
                if not words:
                    return
                if words[0] == "reboot":
                    self.reboot()
                    emit(event="rebooted")
                elif words[0] == "silence":
                    quiet_until = time.monotonic() + float(words[1])
                    emit(event="silent", seconds=float(words[1]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True, help="pymavlink connection string")
    p.add_argument("--sysid", type=int, required=True)
    p.add_argument("--lat", type=float, default=-35.3632)
    p.add_argument("--lon", type=float, default=149.1652)
    p.add_argument("--uid", type=lambda s: int(s, 16), default=0x1234_5678_9ABC_DEF0)
    p.add_argument("--firmware", default="4.5.7")
    p.add_argument("--autopilot", choices=["ardupilot", "px4"], default="ardupilot")
    p.add_argument("--no-message-interval", action="store_true")
    p.add_argument("--no-home", action="store_true")
    for answer in ("deny", "fail", "unsupported", "ignore"):
        p.add_argument(f"--{answer}", type=int, action="append", default=[], metavar="MAV_CMD")
    Autopilot(p.parse_args()).run()


if __name__ == "__main__":
    main()
