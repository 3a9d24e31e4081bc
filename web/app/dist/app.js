// The station's web app: a map of the drones with their tracks, the fields and geofences;
// the fleet list; alerts; a vehicle page with live values and a chart from history.
//
// It talks to the station only through its API: REST for what exists, the WebSocket
// stream (/api/v1/stream) for what changes. Nothing is fetched from the internet. A station
// that stops talking for a few seconds is shown as offline, and its numbers as stale, never
// as live.

const TOKEN_KEY = "trellis.token";
const OFFLINE_AFTER_MS = 3500;
const TRACK_POINTS = 600; // a minute at 10 Hz
const ROLE_RANK = { viewer: 0, pilot: 1, admin: 2 };

const $ = (id) => document.getElementById(id);
const state = {
  token: null,
  role: null,
  vehicles: new Map(), // sysid → { data, marker, track }
  fields: [],
  geofences: [],
  alerts: [],
  lastMessage: 0,
  sync: null,
  selected: null,
  /** Once the user pans or zooms, the map is theirs: new vehicles no longer refit it. */
  userMoved: false,
};

// --- signing in -----------------------------------------------------------------------

/** A token from the QR link (#token=…) wins; it is then kept, and taken out of the address. */
function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(TOKEN_KEY);
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  location.hash = "";
  sessionStorage.setItem("trellis.signout", message || "");
  location.reload();
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) },
  });
  if (response.status === 401) {
    signOut("That token is not (or no longer) valid.");
    throw new Error("unauthorized");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body?.error?.message || `${response.status}`);
  }
  return body;
}

function showSignIn() {
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = sessionStorage.getItem("trellis.signout") || "";
  sessionStorage.removeItem("trellis.signout");
  $("sign-in").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    const r = await fetch("/api/v1/vehicles", { headers: { Authorization: `Bearer ${token}` } });
    if (r.ok) {
      localStorage.setItem(TOKEN_KEY, token);
      location.reload();
    } else {
      $("sign-in-error").textContent =
        r.status === 429 ? "Too many wrong tokens: wait a minute." : "That token is not valid here.";
    }
  });
}

// --- the map ---------------------------------------------------------------------------

/** A plain grid for stations with no offline basemap: scale and orientation, no imagery. */
const Grid = L.GridLayer.extend({
  createTile(coords) {
    const tile = document.createElement("canvas");
    const size = this.getTileSize();
    tile.width = size.x;
    tile.height = size.y;
    const g = tile.getContext("2d");
    g.fillStyle = "#f4f4ee";
    g.fillRect(0, 0, size.x, size.y);
    g.strokeStyle = "#c8c8c0";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const p = (i * size.x) / 4 + 0.5;
      g.beginPath(); g.moveTo(p, 0); g.lineTo(p, size.y); g.stroke();
      g.beginPath(); g.moveTo(0, p); g.lineTo(size.x, p); g.stroke();
    }
    g.strokeStyle = "#999";
    g.strokeRect(0.5, 0.5, size.x, size.y);
    return tile;
  },
});

let map;
const fieldLayer = L.layerGroup();
const trackLayer = L.layerGroup();

function initMap(health) {
  map = L.map("map", { attributionControl: false, zoomSnap: 0.5 }).setView([0, 0], 2);
  if (health.basemap) {
    const t = encodeURIComponent(state.token);
    L.tileLayer(`/tiles/{z}/{x}/{y}?access_token=${t}`, {
      maxZoom: 22,
      minZoom: health.basemap.min_zoom,
      maxNativeZoom: health.basemap.max_zoom,
      className: "basemap",
    }).addTo(map);
  } else {
    new Grid({ maxZoom: 22 }).addTo(map);
  }
  fieldLayer.addTo(map);
  trackLayer.addTo(map);
  for (const e of ["pointerdown", "wheel", "keydown"]) {
    map.getContainer().addEventListener(e, () => { state.userMoved = true; }, { passive: true });
  }
}

function colour(v) {
  if (v.link.state === "lost") return "#666";
  if (lowBattery(v)) return "#a85a00";
  return v.armed ? "#0047b3" : "#0a6b1f";
}

function lowBattery(v) {
  const pct = v.battery.remaining_pct;
  return pct !== null && pct !== undefined && pct >= 0 && pct <= 20;
}

function markerIcon(v) {
  const c = colour(v);
  const shape = v.heading_deg === null || v.heading_deg === undefined
    ? `<circle cx="12" cy="12" r="8" fill="${c}" stroke="#fff" stroke-width="2"/>`
    : `<path d="M12 1 L21 22 L12 17 L3 22 Z" fill="${c}" stroke="#fff" stroke-width="2"
         transform="rotate(${v.heading_deg.toFixed(0)} 12 12)"/>`;
  const ring = v.link.state === "lost"
    ? `<circle cx="12" cy="12" r="11" fill="none" stroke="#b00020" stroke-width="3"/>` : "";
  return L.divIcon({
    className: "vehicle-marker",
    iconSize: [24, 24],
    iconAnchor: [12, 12],
    html: `<svg width="24" height="24" data-sysid="${v.sysid}">${ring}${shape}</svg>` +
      `<span class="label">${escape(v.name)}</span>`,
  });
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// --- vehicles ----------------------------------------------------------------------------

function updateVehicle(v) {
  let entry = state.vehicles.get(v.sysid);
  if (!entry) {
    entry = { data: v, marker: null, track: L.polyline([], { color: "#0047b3", weight: 3, opacity: 0.6, className: "track" }) };
    entry.track.addTo(trackLayer);
    state.vehicles.set(v.sysid, entry);
  }
  entry.data = v;
  if (v.position) {
    const at = [v.position.lat, v.position.lon];
    if (!entry.marker) {
      entry.marker = L.marker(at, { icon: markerIcon(v), keyboard: false })
        .on("click", () => select(v.sysid))
        .addTo(map);
      fitFleet();
    } else {
      entry.marker.setLatLng(at);
      entry.marker.setIcon(markerIcon(v));
    }
    const points = entry.track.getLatLngs();
    const last = points[points.length - 1];
    if (!last || map.distance(last, at) > 0.5) {
      entry.track.addLatLng(at);
      if (points.length > TRACK_POINTS) entry.track.setLatLngs(points.slice(-TRACK_POINTS));
    }
  }
  scheduleRender();
  if (state.selected === v.sysid) renderVehicle();
}

/** Shows every vehicle and field, until the user has moved the map themselves. */
function fitFleet() {
  if (state.userMoved) return;
  const at = [...state.vehicles.values()].filter((e) => e.data.position)
    .map((e) => [e.data.position.lat, e.data.position.lon]);
  const fields = state.fields.flatMap((f) => f.polygon || []);
  const all = at.concat(fields);
  if (all.length === 0) return;
  map.fitBounds(L.latLngBounds(all).pad(0.15), { maxZoom: 18 });
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => { renderQueued = false; renderFleet(); renderFields(); }, 250);
}

function renderFleet() {
  const rows = [...state.vehicles.values()].map((e) => e.data)
    .sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  $("fleet-table").tBodies[0].replaceChildren(...rows.map((v) => {
    const tr = document.createElement("tr");
    const lost = v.link.state === "lost";
    tr.className = `vehicle${lost ? " lost" : ""}${lowBattery(v) ? " low" : ""}`;
    tr.dataset.sysid = v.sysid;
    const pct = v.battery.remaining_pct;
    const volts = v.battery.voltage_v;
    tr.innerHTML = `
      <td class="name">${escape(v.name)}${v.armed ? ' <span class="flag armed">ARMED</span>' : ""}</td>
      <td>${escape(v.mode)}</td>
      <td class="battery">${pct >= 0 && pct !== null ? `${pct}%` : "–"}${volts ? ` ${volts.toFixed(1)} V` : ""}${lowBattery(v) ? ' <span class="flag low">LOW</span>' : ""}</td>
      <td>${escape(v.gps.fix)} ${v.gps.satellites}</td>
      <td>${lost ? '<span class="flag lost">LOST</span>' : `${(100 - v.link.loss_pct).toFixed(0)}%`}</td>
      <td>${v.link.since_heard_s.toFixed(0)} s</td>`;
    tr.addEventListener("click", () => select(v.sysid));
    return tr;
  }));
}

// --- fields and geofences ------------------------------------------------------------------

/** A record's polygon: `polygon` as [[lat, lon], …], or a GeoJSON Polygon in `geometry`. */
function polygonOf(fields) {
  if (Array.isArray(fields.polygon)) return fields.polygon;
  const g = fields.geometry;
  if (g && g.type === "Polygon" && Array.isArray(g.coordinates?.[0])) {
    return g.coordinates[0].map(([lon, lat]) => [lat, lon]);
  }
  return null;
}

async function loadRecords() {
  const [fields, fences] = await Promise.all([api("/api/v1/fields"), api("/api/v1/geofences")]);
  state.fields = fields.fields.map((r) => ({ key: r.key, ...r.fields, polygon: polygonOf(r.fields) }));
  state.geofences = fences.geofences.map((r) => ({ key: r.key, ...r.fields, polygon: polygonOf(r.fields) }));
  fieldLayer.clearLayers();
  for (const f of state.fields.filter((f) => f.polygon)) {
    L.polygon(f.polygon, { color: "#0a6b1f", weight: 2, fillOpacity: 0.08, className: "field" })
      .bindTooltip(f.name || f.key).addTo(fieldLayer);
  }
  for (const g of state.geofences.filter((g) => g.polygon)) {
    L.polygon(g.polygon, { color: "#b00020", weight: 3, dashArray: "8 6", fill: false, className: "geofence" })
      .bindTooltip(`${g.name || g.key}${g.ceiling_m ? ` ≤ ${g.ceiling_m} m` : ""}`).addTo(fieldLayer);
  }
  fitFleet();
  renderFields();
}

function inside([lat, lon], polygon) {
  let hit = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [ai, bi] = polygon[i];
    const [aj, bj] = polygon[j];
    if ((bi > lon) !== (bj > lon) && lat < ((aj - ai) * (lon - bi)) / (bj - bi) + ai) hit = !hit;
  }
  return hit;
}

function renderFields() {
  $("field-list").replaceChildren(...state.fields.map((f) => {
    const li = document.createElement("li");
    const working = f.polygon && [...state.vehicles.values()].map((e) => e.data)
      .find((v) => v.position && v.mission.total > 0 && inside([v.position.lat, v.position.lon], f.polygon));
    const progress = working
      ? `<progress max="${working.mission.total}" value="${working.mission.current}"></progress>
         ${escape(working.name)}: item ${working.mission.current} of ${working.mission.total}`
      : "no vehicle surveying";
    li.innerHTML = `<strong>${escape(f.name || f.key)}</strong><br>${progress}`;
    return li;
  }));
}

// --- alerts ------------------------------------------------------------------------------

/** Whether the signed-in role may use a control that needs `role`; unknown roles may not. */
const allowed = (role) => ROLE_RANK[state.role] >= ROLE_RANK[role];

function renderAlerts() {
  const open = state.alerts.filter((a) => !a.acknowledged).length;
  $("alert-count").textContent = open ? String(open) : "";
  $("alert-list").replaceChildren(...state.alerts.slice(0, 100).map((a) => {
    const li = document.createElement("li");
    li.className = `${a.severity}${a.acknowledged ? " acked" : ""}`;
    li.dataset.seq = a.seq;
    const v = state.vehicles.get(a.vehicle);
    const name = v ? v.data.name : `vehicle ${a.vehicle}`;
    // Alerts name their vehicle as it was called then; say which one only if they do not.
    const text = a.message.startsWith(name) ? a.message : `${name}: ${a.message}`;
    li.innerHTML = `${escape(text)} <time>${new Date(a.t_us / 1000).toLocaleString()}</time>`;
    if (a.acknowledged) {
      const by = document.createElement("span");
      by.className = "acked-by";
      by.textContent = `acknowledged by ${a.acknowledged.by}, ${new Date(a.acknowledged.t_us / 1000).toLocaleTimeString()}`;
      li.append(by);
    } else if (allowed("pilot")) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "ack";
      button.textContent = "Acknowledge";
      button.addEventListener("click", () => acknowledge(a, button));
      li.append(button);
    }
    return li;
  }));
}

async function acknowledge(alert, button) {
  button.disabled = true;
  try {
    const answer = await api(`/api/v1/alerts/${alert.seq}/ack`, { method: "POST" });
    alert.acknowledged = answer.acknowledged;
    renderAlerts();
  } catch (err) {
    button.disabled = false;
    button.textContent = `Acknowledge (${err.message})`;
  }
}

/** Someone (here or on another phone) acknowledged an alert. */
function acknowledged(event) {
  const alert = state.alerts.find((a) => a.seq === event.acknowledges);
  if (!alert || alert.acknowledged) return;
  alert.acknowledged = event.acknowledged;
  renderAlerts();
}

// --- the vehicle page ------------------------------------------------------------------------

function select(sysid) {
  state.selected = sysid;
  $("vehicle").hidden = false;
  renderVehicle();
  loadChart(sysid);
  // On a phone the page sits below the lists: bring it to the thumb.
  if (window.matchMedia("(max-width: 899px)").matches) {
    $("vehicle").scrollIntoView({ block: "start" });
  }
}

function renderVehicle() {
  const entry = state.vehicles.get(state.selected);
  if (!entry) return;
  const v = entry.data;
  $("vehicle-name").textContent = v.name;
  const values = {
    Mode: `${v.mode}${v.armed ? " · armed" : ""}`,
    Position: v.position ? `${v.position.lat.toFixed(6)}, ${v.position.lon.toFixed(6)}` : "–",
    Altitude: v.position ? `${v.position.alt_rel_m.toFixed(1)} m above home` : "–",
    Heading: v.heading_deg === null ? "–" : `${v.heading_deg.toFixed(0)}°`,
    Speed: `${v.groundspeed_mps.toFixed(1)} m/s`,
    Battery: `${v.battery.remaining_pct ?? "–"}% ${v.battery.voltage_v ? v.battery.voltage_v.toFixed(2) + " V" : ""}`,
    GPS: `${v.gps.fix}, ${v.gps.satellites} satellites`,
    Mission: v.mission.total ? `item ${v.mission.current} of ${v.mission.total}` : "none",
    Link: `${v.link.state}, ${v.link.loss_pct.toFixed(1)}% loss, heard ${v.link.since_heard_s.toFixed(1)} s ago`,
    Identity: v.uid || "not reported",
  };
  $("vehicle-values").innerHTML = Object.entries(values)
    .map(([k, val]) => `<dt>${k}</dt><dd>${escape(val)}</dd>`).join("");
}

async function loadChart(sysid) {
  // No from/to: the station's own last hour. A phone's clock and a Pi's (no real-time
  // clock) can be days apart.
  const history = await api(`/api/v1/vehicles/${sysid}/telemetry?every=10s`)
    .catch(() => null);
  if (!history || state.selected !== sysid) return;
  drawChart(history.samples);
}

function drawChart(samples) {
  const canvas = $("vehicle-chart");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (samples.length < 2) {
    g.fillStyle = "#111";
    g.font = "16px system-ui";
    g.fillText("no history yet", 12, 24);
    return;
  }
  const t0 = samples[0].t_us;
  const t1 = samples[samples.length - 1].t_us;
  const line = (value, max, colour) => {
    g.strokeStyle = colour;
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((s, i) => {
      const x = ((s.t_us - t0) / Math.max(1, t1 - t0)) * (canvas.width - 20) + 10;
      const y = canvas.height - 10 - (Math.max(0, value(s)) / max) * (canvas.height - 20);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  };
  const maxAlt = Math.max(10, ...samples.map((s) => s.alt_rel_m));
  line((s) => s.alt_rel_m, maxAlt, "#0047b3");
  line((s) => s.battery_pct ?? 0, 100, "#a85a00");
}

async function rename(e) {
  e.preventDefault();
  const name = $("rename-input").value.trim();
  try {
    await api(`/api/v1/vehicles/${state.selected}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    $("rename-result").textContent = "saved";
  } catch (err) {
    $("rename-result").textContent = err.message;
  }
}

// --- the live stream -----------------------------------------------------------------------

function connect(delay = 1000) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/stream?access_token=${encodeURIComponent(state.token)}`);
  ws.onopen = () => { delay = 1000; };
  ws.onmessage = (m) => {
    state.lastMessage = Date.now();
    const msg = JSON.parse(m.data);
    switch (msg.type) {
      case "hello":
        state.role = msg.token.role;
        $("who").textContent = `${msg.token.name} · ${msg.token.role}`;
        for (const el of document.querySelectorAll("[data-needs]")) {
          el.hidden = !allowed(el.dataset.needs);
        }
        renderAlerts();
        break;
      case "state": updateVehicle(msg.vehicle); break;
      case "alert":
        state.alerts.unshift(msg.event);
        renderAlerts();
        break;
      case "ack": acknowledged(msg.event); break;
      case "record": scheduleRecords(); break;
      case "station": state.sync = msg.sync; break;
    }
    showStatus();
  };
  ws.onclose = (e) => {
    if (e.code === 4001) return signOut("This token was revoked.");
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

let recordsTimer = null;
function scheduleRecords() {
  clearTimeout(recordsTimer);
  recordsTimer = setTimeout(() => loadRecords().catch(() => {}), 300);
}

function showStatus() {
  const live = Date.now() - state.lastMessage < OFFLINE_AFTER_MS;
  const status = $("status");
  status.className = `status ${live ? "live" : "offline"}`;
  let text = live ? "live" : "station offline";
  if (live && state.sync?.enrolled && !state.sync.connected) text += " · relay unreachable";
  status.textContent = text;
  $("app").classList.toggle("stale", !live);
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  state.token = takeToken();
  if (!state.token) return showSignIn();
  $("app").hidden = false;
  $("sign-out").hidden = false;
  $("sign-out").addEventListener("click", () => signOut(""));
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll("#tabs button")) {
        t.setAttribute("aria-selected", String(t === tab));
        $(t.dataset.tab).hidden = t !== tab;
      }
    });
  }
  $("vehicle-close").addEventListener("click", () => { state.selected = null; $("vehicle").hidden = true; });
  $("rename").addEventListener("submit", rename);
  const health = await fetch("/api/v1/health").then((r) => r.json());
  initMap(health);
  const [vehicles, alerts] = await Promise.all([api("/api/v1/vehicles"), api("/api/v1/alerts?limit=100")]);
  vehicles.vehicles.forEach(updateVehicle);
  state.alerts = alerts.alerts;
  renderAlerts();
  await loadRecords();
  connect();
  setInterval(showStatus, 1000);
  setInterval(() => { if (state.selected !== null) loadChart(state.selected); }, 30000);
}

start().catch((e) => {
  if (e.message !== "unauthorized") {
    $("status").textContent = `error: ${e.message}`;
  }
});
