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
--lose MAV_CMD:N plays the radio losing the first N sends of a command on the way up (the
vehicle never hears them; a lost_command line says so), --lose-ack MAV_CMD:N losing the
vehicle's first N answers to it on the way down (it acts each time, as ArduPilot does).
Acks carry the asker as their target, as ArduPilot's do (with --ack-to-zero, target 0/0, as
older firmware and some companion computers send them).
Missions, fences and rally points: the mission protocol as ArduPilot plays it (it asks for each
item with the older MISSION_REQUEST and takes MISSION_ITEM_INT or MISSION_ITEM in answer, asks
again after 0.5 s of silence; an upload from a second ground station while one is under way is
DENIED; it stores altitudes to the centimetre and a command without a position in frame 0, so
that is what a download gives back; download, clear, set current). --item-gap SECONDS asks for
each item that long after the last arrived, as over a slow radio.
Parameters, as ArduPilot serves them: PARAM_REQUEST_LIST streams every one with its index,
PARAM_REQUEST_READ answers one (by index or name; an unknown name gets no answer),
PARAM_SET sets it (an integer type keeps the whole number) and answers PARAM_VALUE with index
65535. The list is --params FILE (a Mission Planner .param read with pymavlink's own parser,
or a QGroundControl .params with its types), changed by --param NAME=VALUE, padded to --pad N
parameters. --firmware 4.7.x renames as ArduCopter 4.7 did (SRn_ -> MAV{n+1}_, SYSID_MYGCS
-> MAV_GCS_SYSID, RTL_* and LAND_* in cm -> metres, ARMING_CHECK -> ARMING_SKIPCHK inverted). --hidden PREFIX:ENABLE keeps PREFIX*
out of the list until ENABLE is 1 at boot; --refuse NAME keeps NAME's value whatever is set;
--lose-params F drops that fraction of the listed values (seeded), as a lossy radio would.
With --autopilot px4, integers travel byte-wise in the float, as PX4 sends them.
SYSTEM_TIME carries this machine's time; with --gps-fix-file PATH it carries 0 (a receiver
without a fix) until PATH exists.
Signing: SETUP_SIGNING installs its key with pymavlink's own MAVLink 2 signing (an all-zero
key with a zero timestamp turns it off, as in ArduPilot; a zero key with a timestamp is a key); from then on it signs what it sends and, as ArduPilot does, drops every
unsigned or badly signed frame but RADIO_STATUS.

Prints one JSON object per line: ready; gcs_heartbeat (each, with its monotonic time);
stream (each REQUEST_DATA_STREAM: from, stream, rate); interval (message, hz, from);
request (message, from); command (any other COMMAND_LONG/INT: command, from, confirmation,
params, and x, y, z for COMMAND_INT); mission_receiving (type, count, from) when an upload
starts, mission_denied (type, from) for a second ground station's count while it runs,
mission_stored (type, count, from) when it completes; lost_command and lost_ack (command, confirmation or result) for what --lose and
--lose-ack took; rebooted; signing (enabled) on SETUP_SIGNING; param_read (name, from) for each PARAM_REQUEST_READ by
name; param_set (name, value, from) for each PARAM_SET; params_listed
(count, sent) after a list is streamed.
Reads lines on stdin: "reboot" (rates back to zero, boot time from zero, as a power cycle),
"silence SECONDS" (sends nothing and ignores everything, as a radio out of range),
"reached SEQ" (reports mission item SEQ reached and SEQ+1 current, as in flight),
"unsigned-text TEXT" (one STATUSTEXT sent unsigned even while signing, then signing again).
"""
import argparse
import json
import os
import random
import select
import struct
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
        # Sends (and answers) of a command still to lose on the air, by command number.
        self.sends_to_lose = dict(a.lose)
        self.answers_to_lose = dict(a.lose_ack)
        self.m = mavutil.mavlink_connection(a.connect, source_system=a.sysid, source_component=1)
        self.px4 = a.autopilot == "px4"
        self.later = []  # (when, msg, result, progress): answers still to give
        self.lists = {0: [], 1: [], 2: []}  # mission type -> items (dicts of MISSION_ITEM_INT)
        self.receiving = None  # an upload under way: dict(type, count, items, src, asked)
        self.current = 0
        self.params = load_params(a)  # name -> [value, MAV_PARAM_TYPE], in list order
        self.listing = []  # names still to stream for a PARAM_REQUEST_LIST
        self.lose = random.Random(1)
        self.reboot()

    def reboot(self):
        self.boot = time.monotonic()
        self.armed = False
        self.custom_mode = 0
        # Hz per message name; HEARTBEAT and SYS_STATUS always go out.
        self.rates = {"HEARTBEAT": 1.0, "SYS_STATUS": 1.0}
        self.next = {}
        self.visible = [n for n in self.params if self.shown(n)]
        self.listing = []

    def shown(self, name):
        for rule in self.a.hidden:
            prefix, enable = rule.split(":")
            if name.startswith(prefix) and name != enable and self.params.get(enable, [0])[0] != 1:
                return False
        return True

    def param_value(self, name, index):
        value, ptype = self.params[name]
        raw = value
        if self.px4 and ptype != mavlink.MAV_PARAM_TYPE_REAL32:
            raw = struct.unpack("<f", struct.pack("<i", int(value)))[0]
        self.m.mav.param_value_send(name.encode(), raw, ptype, len(self.visible), index)

    def parameters(self, msg):
        t, src = msg.get_type(), msg.get_srcSystem()
        if t == "PARAM_REQUEST_LIST":
            self.listing = list(self.visible)
            self.listed = 0
        elif t == "PARAM_REQUEST_READ":
            if msg.param_index >= 0:
                if msg.param_index < len(self.visible):
                    self.param_value(self.visible[msg.param_index], msg.param_index)
            else:
                name = msg.param_id
                emit(event="param_read", name=name, **{"from": src})
                if name in self.visible:
                    self.param_value(name, self.visible.index(name))
        elif t == "PARAM_SET":
            name = msg.param_id
            if name not in self.visible:
                return  # as ArduPilot: nothing
            raw = msg.param_value
            ptype = self.params[name][1]
            if self.px4 and ptype != mavlink.MAV_PARAM_TYPE_REAL32:
                raw = struct.unpack("<i", struct.pack("<f", raw))[0]
            value = float32(raw) if ptype == mavlink.MAV_PARAM_TYPE_REAL32 else float(round(raw))
            emit(event="param_set", name=name, value=value, **{"from": src})
            if name not in self.a.refuse:
                self.params[name][0] = value
            self.param_value(name, 65535)

    def stream_params(self):
        # ArduPilot sends the list a few at a time, as its link has room.
        for _ in range(min(10, len(self.listing))):
            name = self.listing.pop(0)
            index = self.visible.index(name)
            if self.lose.random() >= self.a.lose_params:
                self.param_value(name, index)
                self.listed += 1
            if not self.listing:
                emit(event="params_listed", count=len(self.visible), sent=self.listed)

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
            mav.mission_current_send(self.current, self.mission_total())
        elif name == "ATTITUDE":
            mav.attitude_send(ms, 0.0, 0.0, 1.57, 0, 0, 0)
        elif name == "VFR_HUD":
            mav.vfr_hud_send(0, 0, 90, 0, 152, 0)
        elif name == "SYSTEM_TIME":
            # A receiver without a fix reports 0, as ArduPilot does.
            fixed = not a.gps_fix_file or os.path.exists(a.gps_fix_file)
            mav.system_time_send(int(time.time() * 1e6) if fixed else 0, ms)

    def ack(self, msg, result, progress=0):
        if self.answers_to_lose.get(msg.command, 0) > 0:
            self.answers_to_lose[msg.command] -= 1
            emit(event="lost_ack", command=msg.command, result=result)
            return
        to = (0, 0) if self.a.ack_to_zero else (msg.get_srcSystem(), msg.get_srcComponent())
        self.m.mav.command_ack_send(msg.command, result, progress, 0, *to)

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
        elif t.startswith("PARAM_") and getattr(msg, "target_system", None) == self.a.sysid:
            self.parameters(msg)
        elif t == "SETUP_SIGNING" and msg.target_system == self.a.sysid:
            key = bytes(msg.secret_key)
            if not any(key) and msg.initial_timestamp == 0:  # ArduPilot's rule for "off"
                self.m.mav.signing.secret_key = None
                self.m.mav.signing.sign_outgoing = False
                self.m.mav.signing.allow_unsigned_callback = None
                emit(event="signing", enabled=False)
                return
            self.m.setup_signing(key, sign_outgoing=True, initial_timestamp=msg.initial_timestamp,
                                 link_id=0, allow_unsigned_callback=lambda mav, msg_id: msg_id == 109)
            emit(event="signing", enabled=True)

    def mission_total(self):
        # As ArduPilot reports it: home (item 0) is not counted, so the last item's seq is
        # the total (MAVLink's definition of MISSION_CURRENT.total).
        return max(len(self.lists[0]) - 1, 0)

    def mission_ack(self, to, mission_type, result):
        self.m.mav.mission_ack_send(to[0], to[1], result, mission_type)

    def request_item(self):
        r = self.receiving
        r["asked"] = time.monotonic()
        self.m.mav.mission_request_send(r["src"][0], r["src"][1], len(r["items"]), r["type"])

    def mission(self, msg):
        t, src = msg.get_type(), (msg.get_srcSystem(), msg.get_srcComponent())
        mtype = getattr(msg, "mission_type", 0)
        if t == "MISSION_COUNT":
            if self.receiving and self.receiving["src"] != src:
                self.mission_ack(src, mtype, mavlink.MAV_MISSION_DENIED)
                emit(event="mission_denied", type=mtype, **{"from": src[0]})
                return
            if msg.count == 0:
                self.lists[mtype] = []
                self.mission_ack(src, mtype, mavlink.MAV_MISSION_ACCEPTED)
                return
            self.receiving = {"type": mtype, "count": msg.count, "items": [], "src": src,
                              "heard": time.monotonic(), "due": None}
            emit(event="mission_receiving", type=mtype, count=msg.count, **{"from": src[0]})
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
            item["z"] = round(item["z"] * 100) / 100
            nav = item["command"] < 100 or 5000 <= item["command"] < 5200
            if not nav or (item["x"], item["y"]) == (0, 0):
                item["frame"] = 0  # no position: ArduPilot keeps none
            r["items"].append(item)
            if len(r["items"]) < r["count"]:
                if self.a.item_gap:
                    r["due"] = time.monotonic() + self.a.item_gap
                else:
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
            self.m.mav.mission_current_send(self.current, self.mission_total())

    def command(self, msg):
        src = msg.get_srcSystem()
        c = msg.command
        if self.sends_to_lose.get(c, 0) > 0:
            self.sends_to_lose[c] -= 1
            emit(event="lost_command", command=c, confirmation=getattr(msg, "confirmation", None))
            return
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
            version = (major << 24) | (minor << 16) | (patch << 8) | (0 if self.a.dev else 255)
            # ArduPilot leaves uid 0 and sends its board id in uid2 (--uid2).
            uid2 = list(self.a.uid2.encode().ljust(18, b"\0"))[:18]
            self.m.mav.autopilot_version_send(0, version, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8, 0, 0,
                                              0 if self.a.uid2 else self.a.uid, uid2)
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
        if c == mavlink.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN and msg.param1 == 1:
            self.ack(msg, mavlink.MAV_RESULT_ACCEPTED)
            self.reboot()
            emit(event="rebooted")
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
            elif r and r["due"] is not None:
                if now >= r["due"]:
                    r["due"] = None
                    self.request_item()
            elif r and now - r["asked"] > 0.5:
                self.request_item()
            if self.listing and now >= quiet_until:
                self.stream_params()
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
                elif words[0] == "reached":
                    seq = int(words[1])
                    self.m.mav.mission_item_reached_send(seq)
                    self.current = seq + 1
                    self.m.mav.mission_current_send(self.current, self.mission_total())
                elif words[0] == "unsigned-text":
                    signing = self.m.mav.signing
                    was, signing.sign_outgoing = signing.sign_outgoing, False
                    self.m.mav.statustext_send(mavlink.MAV_SEVERITY_INFO, " ".join(words[1:]).encode())
                    signing.sign_outgoing = was
                    emit(event="sent_unsigned")
                elif words[0] == "silence":
                    quiet_until = time.monotonic() + float(words[1])
                    emit(event="silent", seconds=float(words[1]))


def float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ArduCopter 4.7's renames, as its 4.7.0-dev SITL of February 2026 converts an older
# vehicle's parameters on upgrade: (old, new, scale); SRn_ and ARMING_CHECK below.
RENAMES_4_7 = [
    ("SYSID_THISMAV", "MAV_SYSID", 1), ("SYSID_MYGCS", "MAV_GCS_SYSID", 1),
    ("RTL_ALT", "RTL_ALT_M", 0.01), ("RTL_ALT_FINAL", "RTL_ALT_FINAL_M", 0.01),
    ("RTL_SPEED", "RTL_SPEED_MS", 0.01), ("RTL_CLIMB_MIN", "RTL_CLIMB_MIN_M", 0.01),
    ("LAND_SPEED", "LAND_SPD_MS", 0.01), ("LAND_SPEED_HIGH", "LAND_SPD_HIGH_MS", 0.01),
    ("LAND_ALT_LOW", "LAND_ALT_LOW_M", 0.01),
]


def skipped_checks(run):
    """ARMING_CHECK (a mask of checks to run; bit 0 = all) as 4.7's ARMING_SKIPCHK."""
    run = int(run)
    if run == 0:
        return -1
    if run & 1:
        return 0
    return ~run & ((1 << 21) - 2)


def load_params(a):
    """name -> [value, MAV_PARAM_TYPE], in the vehicle's list order."""
    params = {}
    if a.params and a.params.endswith(".params"):
        for line in open(a.params):
            cols = line.strip().split("\t")
            if line.startswith("#") or len(cols) != 5:
                continue
            params[cols[2]] = [float32(float(cols[3])), int(cols[4])]
    elif a.params:
        from pymavlink import mavparm
        loaded = mavparm.MAVParmDict()
        loaded.load(a.params, use_excludes=False)
        for name, value in loaded.items():
            whole = float(value).is_integer()
            ptype = mavlink.MAV_PARAM_TYPE_INT16 if whole else mavlink.MAV_PARAM_TYPE_REAL32
            params[name] = [float32(value), ptype]
    for change in a.param:
        name, value = change.split("=")
        ptype = params.get(name, [0, mavlink.MAV_PARAM_TYPE_REAL32])[1]
        params[name] = [float32(float(value)), ptype]
    if a.firmware.startswith("4.7"):
        renamed = {}
        for name, v in params.items():
            if name.startswith("SR") and name[2:3].isdigit():
                n, rest = name[2:].split("_", 1)
                name = f"MAV{int(n) + 1}_{rest}"
            for old, new, scale in RENAMES_4_7:
                if name == old:
                    name, v = new, [float32(v[0] * scale), mavlink.MAV_PARAM_TYPE_REAL32 if scale != 1 else v[1]]
            if name == "ARMING_CHECK":
                name, v = "ARMING_SKIPCHK", [float(skipped_checks(v[0])), mavlink.MAV_PARAM_TYPE_INT32]
            renamed[name] = v
        params = renamed
    for i in range(len(params), a.pad):
        params[f"PAD_{i:05d}"] = [float(i), mavlink.MAV_PARAM_TYPE_INT32]
    return params


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True, help="pymavlink connection string")
    p.add_argument("--sysid", type=int, required=True)
    p.add_argument("--lat", type=float, default=-35.3632)
    p.add_argument("--lon", type=float, default=149.1652)
    p.add_argument("--uid", type=lambda s: int(s, 16), default=0x1234_5678_9ABC_DEF0)
    p.add_argument("--firmware", default="4.5.7")
    p.add_argument("--uid2", default="", help="send no uid but this board id in uid2, as ArduPilot")
    p.add_argument("--dev", action="store_true", help="a development build (FIRMWARE_VERSION_TYPE_DEV)")
    p.add_argument("--autopilot", choices=["ardupilot", "px4"], default="ardupilot")
    p.add_argument("--no-message-interval", action="store_true")
    p.add_argument("--no-home", action="store_true")
    p.add_argument("--params", help=".param or .params file: the vehicle's parameters")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--pad", type=int, default=0, metavar="N")
    p.add_argument("--ack-to-zero", action="store_true")
    p.add_argument("--item-gap", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--hidden", action="append", default=[], metavar="PREFIX:ENABLE")
    p.add_argument("--refuse", action="append", default=[], metavar="NAME")
    p.add_argument("--lose-params", type=float, default=0.0, metavar="FRACTION")
    p.add_argument("--gps-fix-file", metavar="PATH",
                   help="SYSTEM_TIME carries no time (no GPS fix) until this file exists")
    def command_count(text):
        command, count = text.split(":")
        return int(command), int(count)
    p.add_argument("--lose", type=command_count, action="append", default=[], metavar="MAV_CMD:N")
    p.add_argument("--lose-ack", type=command_count, action="append", default=[],
                   metavar="MAV_CMD:N")
    for answer in ("deny", "fail", "unsupported", "ignore"):
        p.add_argument(f"--{answer}", type=int, action="append", default=[], metavar="MAV_CMD")
    Autopilot(p.parse_args()).run()


if __name__ == "__main__":
    main()
