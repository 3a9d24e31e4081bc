// The web app of both daemons: a map of the drones with their tracks, the fields and
// geofences; the fleet list; alerts; a vehicle page with live values and a chart from
// history. At a station it shows that station's vehicles; at the relay (HQ) it shows an
// org's vehicles from all its stations, what other orgs share (labelled by owner), the
// stations and their sync state, and mission proposals.
//
// It talks to the daemon only through its API: REST for what exists, the WebSocket stream
// for what changes. Nothing is fetched from the internet. A daemon that stops talking for a
// few seconds is shown as offline, and its numbers as stale, never as live.

const TOKEN_KEY = "trellis.token";
const OFFLINE_AFTER_MS = 3500;
const TRACK_POINTS = 600; // a minute at 10 Hz
// A station's pilot and HQ's operator may change things; a viewer only looks.
const ROLE_RANK = { viewer: 0, pilot: 1, operator: 1, admin: 2 };
/** At HQ, a vehicle not reported for this long is shown as lost. */
const HQ_LOST_AFTER_S = 10;

/** Which daemon served the app: "station", or "hq" (the relay, for one org). */
const site = { kind: "station", org: null };

/** The path of one of the site's resources: `vehicles`, `alerts`, `fields`, …. */
function path(resource) {
  return site.kind === "hq" ? `/api/v1/orgs/${encodeURIComponent(site.org)}/${resource}` : `/api/v1/${resource}`;
}

const $ = (id) => document.getElementById(id);
const state = {
  token: null,
  role: null,
  vehicles: new Map(), // key → { data, marker, track }
  fields: [],
  geofences: [],
  alerts: [],
  lastMessage: 0,
  sync: null,
  /** The daemon's clock minus ours, in µs, from its heartbeats: "heard 3 s ago" by its clock. */
  clockOffsetUs: 0,
  edges: [],
  proposals: [],
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

/**
 * Every item of a paged list: the daemon answers up to a page (`limit`, at most 1000) and
 * the `after` of the next in `next`. The answer is the last page's, with `items` holding all.
 */
async function all(path, items) {
  const sep = path.includes("?") ? "&" : "?";
  let page = await api(`${path}${sep}limit=1000`);
  const gathered = page[items];
  while (page.next != null) {
    page = await api(`${path}${sep}limit=1000&after=${encodeURIComponent(page.next)}`);
    gathered.push(...page[items]);
  }
  return { ...page, [items]: gathered };
}

function showSignIn() {
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = sessionStorage.getItem("trellis.signout") || "";
  sessionStorage.removeItem("trellis.signout");
  $("sign-in").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    const check = site.kind === "hq" ? "/api/v1/cop" : "/api/v1/vehicles";
    const r = await fetch(check, { headers: { Authorization: `Bearer ${token}` } });
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
    html: `<svg width="24" height="24" data-key="${escape(v.key)}">${ring}${shape}</svg>` +
      `<span class="label">${escape(v.name)}</span>`,
  });
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// --- vehicles ----------------------------------------------------------------------------

/** A vehicle as HQ's picture has it (own or shared), in the station's shape. */
function fromEntity(e) {
  const s = e.state;
  const nowUs = Date.now() * 1000 + state.clockOffsetUs;
  const heardS = s ? Math.max(0, (nowUs - s.t_us) / 1e6) : Infinity;
  return {
    key: e.shared ? `${e.owner}/${e.id}` : String(e.id),
    id: e.id,
    name: e.name,
    owner: e.owner,
    shared: e.shared,
    stations: (e.heard_by || []).map((h) => h.edge),
    station: s?.edge ?? e.heard_by?.[0]?.edge ?? "",
    uid: e.uid ?? null,
    mode: s ? s.mode ?? `mode ${s.custom_mode ?? "?"}` : "–",
    armed: Boolean(s?.armed),
    position: s ? { lat: s.lat, lon: s.lon, alt_msl_m: s.alt_msl_m, alt_rel_m: null } : null,
    heading_deg: s?.heading_deg ?? null,
    battery: { remaining_pct: s?.battery_pct ?? null, voltage_v: null },
    coarsened_m: e.coarsened_m ?? null,
    mission: { current: 0, total: 0 },
    link: { state: heardS > HQ_LOST_AFTER_S ? "lost" : "ok", loss_pct: 0, since_heard_s: heardS },
  };
}

function updateVehicle(v) {
  if (site.kind === "station") v.key = String(v.sysid);
  let entry = state.vehicles.get(v.key);
  if (!entry) {
    entry = { data: v, marker: null, track: L.polyline([], { color: "#0047b3", weight: 3, opacity: 0.6, className: "track" }) };
    entry.track.addTo(trackLayer);
    state.vehicles.set(v.key, entry);
  }
  entry.data = v;
  if (v.position) {
    const at = [v.position.lat, v.position.lon];
    if (!entry.marker) {
      entry.marker = L.marker(at, { icon: markerIcon(v), keyboard: false })
        .on("click", () => select(v.key))
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
  if (state.selected === v.key) renderVehicle();
}

/** A shared vehicle left the picture (its agreement was revoked, or it left the area). */
function removeVehicle(key) {
  const entry = state.vehicles.get(key);
  if (!entry) return;
  entry.marker?.remove();
  entry.track.remove();
  state.vehicles.delete(key);
  if (state.selected === key) { state.selected = null; $("vehicle").hidden = true; }
  scheduleRender();
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
    .sort((a, b) => (a.shared - b.shared) || a.name.localeCompare(b.name, undefined, { numeric: true }));
  $("fleet-head").innerHTML = site.kind === "hq"
    ? "<th>Vehicle</th><th>Station</th><th>Mode</th><th>Battery</th><th>Heard</th>"
    : "<th>Vehicle</th><th>Mode</th><th>Battery</th><th>GPS</th><th>Link</th><th>Heard</th>";
  $("fleet-table").tBodies[0].replaceChildren(...rows.map((v) => {
    const tr = document.createElement("tr");
    const lost = v.link.state === "lost";
    tr.className = `vehicle${lost ? " lost" : ""}${lowBattery(v) ? " low" : ""}${v.shared ? " shared" : ""}`;
    tr.dataset.key = v.key;
    const pct = v.battery.remaining_pct;
    const volts = v.battery.voltage_v;
    const name = `<td class="name">${escape(v.name)}${v.armed ? ' <span class="flag armed">ARMED</span>' : ""}</td>`;
    const battery = `<td class="battery">${pct >= 0 && pct !== null ? `${pct}%` : "–"}${volts ? ` ${volts.toFixed(1)} V` : ""}${lowBattery(v) ? ' <span class="flag low">LOW</span>' : ""}</td>`;
    const heard = lost && site.kind === "hq" ? '<span class="flag lost">LOST</span>'
      : Number.isFinite(v.link.since_heard_s) ? `${v.link.since_heard_s.toFixed(0)} s` : "never";
    tr.innerHTML = site.kind === "hq"
      ? `${name}<td>${v.shared ? `<span class="owner">shared by ${escape(v.owner)}</span>` : escape(v.station)}</td>
         <td>${escape(v.mode)}</td>${v.shared ? "<td>–</td>" : battery}<td>${heard}</td>`
      : `${name}<td>${escape(v.mode)}</td>${battery}
         <td>${escape(v.gps.fix)} ${v.gps.satellites}</td>
         <td>${lost ? '<span class="flag lost">LOST</span>' : `${(100 - v.link.loss_pct).toFixed(0)}%`}</td>
         <td>${heard}</td>`;
    tr.addEventListener("click", () => select(v.key));
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
  const [fields, fences, missions] = await Promise.all([
    all(path("fields"), "fields"), all(path("geofences"), "geofences"),
    site.kind === "station" ? all("/api/v1/missions", "missions") : { missions: [] },
  ]);
  // Which field each stored mission was planned over: a vehicle flying it works that field.
  state.missionField = new Map(missions.missions.map((m) => [m.key, m.fields.field]));
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
    const vehicles = [...state.vehicles.values()].map((e) => e.data);
    // The vehicle flying a mission planned over this field; else one flying any mission in it.
    const working = vehicles.find((v) => v.mission.key && state.missionField?.get(v.mission.key) === f.key)
      || (f.polygon && vehicles.find((v) => v.position && v.mission.total > 0
        && inside([v.position.lat, v.position.lon], f.polygon)));
    const reached = working?.mission.reached;
    const progress = working
      ? `<progress max="${working.mission.total}" value="${working.mission.current}"></progress>
         ${escape(working.name)}: item ${working.mission.current} of ${working.mission.total}${
  reached === null || reached === undefined ? "" : `, reached ${reached}`}`
      : "no vehicle working it";
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
    // Alerts name their vehicle as it was called then; HQ's also say which station.
    const v = site.kind === "station" ? state.vehicles.get(String(a.vehicle)) : null;
    const name = v ? v.data.name : `vehicle ${a.vehicle}`;
    const text = site.kind === "hq" || a.message.startsWith(name) ? a.message : `${name}: ${a.message}`;
    const where = site.kind === "hq" ? ` <span class="owner">at ${escape(a.edge)}</span>` : "";
    li.innerHTML = `${escape(text)}${where} <time>${new Date(a.t_us / 1000).toLocaleString()}</time>`;
    if (a.acknowledged) {
      const by = document.createElement("span");
      by.className = "acked-by";
      by.textContent = `acknowledged by ${a.acknowledged.by}, ${new Date(a.acknowledged.t_us / 1000).toLocaleTimeString()}`;
      li.append(by);
    } else if (site.kind === "station" && allowed("pilot")) {
      // Alerts are acknowledged where the drones are: at the station.
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

async function loadAlerts() {
  const alerts = await api(`${path("alerts")}?limit=100`);
  state.alerts = alerts.alerts;
  renderAlerts();
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

// --- HQ's stations; mission proposals (made at HQ, decided at a station) ---------------------

async function loadEdges() {
  const edges = await all(path("edges"), "edges");
  $("edge-list").replaceChildren(...edges.edges.map((e) => {
    const li = document.createElement("li");
    li.className = e.connected ? "connected" : "disconnected";
    const nowUs = Date.now() * 1000 + state.clockOffsetUs;
    const batch = e.last_batch_us ? `last batch ${((nowUs - e.last_batch_us) / 1e6).toFixed(0)} s ago` : "no batch yet";
    const gaps = e.gaps.length ? ` · <span class="flag lost">${e.gaps.length} gap(s)</span>` : "";
    li.innerHTML = `<strong>${escape(e.edge)}</strong>
      <span class="flag ${e.connected ? "ok" : "lost"}">${e.revoked ? "REVOKED" : e.connected ? "CONNECTED" : "OFFLINE"}</span><br>
      ${e.telemetry_acked} samples, ${e.events_acked} events synced · ${batch}${gaps}`;
    return li;
  }));
}

async function loadProposals() {
  const list = await all(path("missions/proposals"), "proposals");
  $("proposal-list").replaceChildren(...list.proposals.map((p) => {
    const f = p.fields;
    const li = document.createElement("li");
    const vehicle = f.vehicle?.name ? ` for ${escape(f.vehicle.name)}` : "";
    const decided = f.decided_by
      ? `<br><span class="decided">${escape(f.status)} by ${escape(f.decided_by)}${f.note ? `: ${escape(f.note)}` : ""}</span>`
      : "";
    li.dataset.key = p.key;
    li.innerHTML = `<strong>${escape(f.title || p.key)}</strong>${vehicle}
      <span class="flag status">${escape(f.status || "?")}</span><br>
      <span class="owner">by ${escape(f.proposed_by || "?")}${f.mission?.field ? `, field ${escape(f.mission.field)}` : ""}</span>${decided}`;
    // At the station a pilot decides; HQ only proposes.
    if (site.kind === "station" && f.status === "proposed" && allowed("pilot")) li.append(decisionForm(p));
    return li;
  }));
  // The form offers the org's own vehicles and fields.
  const own = [...state.vehicles.values()].map((e) => e.data).filter((v) => !v.shared);
  $("propose-vehicle").replaceChildren(new Option("any vehicle", ""),
    ...own.map((v) => new Option(v.name, v.id)));
  $("propose-field").replaceChildren(...state.fields.map((f) => new Option(f.name || f.key, f.key)));
}

/** Approve (with how to fly a proposed field) or reject, with a note for HQ. */
function decisionForm(p) {
  const form = document.createElement("form");
  form.className = "decide";
  const field = p.fields.mission?.field;
  form.innerHTML = `${field ? `<label>Altitude (m) <input name="alt_m" type="number" min="1" max="500" value="30"></label>
    <label>Speed (m/s) <input name="speed_mps" type="number" min="0.5" max="30" step="0.5" value="5"></label>
    <label>Pass spacing (m) <input name="row_spacing_m" type="number" min="0.5" max="200" step="0.5" value="10"></label>` : ""}
    <label>Note for HQ <input name="note" maxlength="500"></label>
    <span class="row"><button type="button" value="approve">Approve and upload</button>
      <button type="button" value="reject">Reject</button></span>
    <span class="result" role="status"></span>`;
  form.addEventListener("click", async (e) => {
    const button = e.target.closest("button[value]");
    if (!button) return;
    const input = (name) => form.elements.namedItem(name);
    const body = { decision: button.value };
    if (input("note").value.trim()) body.note = input("note").value.trim();
    if (field && body.decision === "approve") {
      body.plan = Object.fromEntries(["alt_m", "speed_mps", "row_spacing_m"]
        .map((n) => [n, Number(input(n).value)]));
    }
    try {
      await api(`/api/v1/missions/proposals/${encodeURIComponent(p.key)}/decision`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      await loadProposals();
    } catch (err) {
      form.querySelector(".result").textContent = err.message;
    }
  });
  return form;
}

async function propose(e) {
  e.preventDefault();
  const vehicle = $("propose-vehicle").value;
  const body = {
    title: $("propose-title").value.trim(),
    vehicle_id: vehicle ? Number(vehicle) : null,
    mission: { kind: "survey", field: $("propose-field").value },
  };
  try {
    const answer = await api(path("missions/proposals"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    $("propose-result").textContent = `proposed (${answer.id}); a pilot on site approves it`;
    await loadProposals();
  } catch (err) {
    $("propose-result").textContent = err.message;
  }
}

// --- the vehicle page ------------------------------------------------------------------------

function select(key) {
  state.selected = key;
  $("vehicle").hidden = false;
  renderVehicle();
  loadChart(key);
  loadParams(key);
  // On a phone the page sits below the lists: bring it to the thumb.
  if (window.matchMedia("(max-width: 899px)").matches) {
    $("vehicle").scrollIntoView({ block: "start" });
  }
}

function renderVehicle() {
  const entry = state.vehicles.get(state.selected);
  if (!entry) return;
  const v = entry.data;
  $("vehicle-name").textContent = v.shared ? `${v.name} (shared by ${v.owner})` : v.name;
  const where = v.position ? `${v.position.lat.toFixed(6)}, ${v.position.lon.toFixed(6)}` : "–";
  const heading = v.heading_deg === null ? "–" : `${v.heading_deg.toFixed(0)}°`;
  const battery = `${v.battery.remaining_pct ?? "–"}% ${v.battery.voltage_v ? v.battery.voltage_v.toFixed(2) + " V" : ""}`;
  const values = site.kind === "hq"
    ? {
      Mode: `${v.mode}${v.armed ? " · armed" : ""}`,
      Position: v.coarsened_m ? `${where} (to ${v.coarsened_m} m)` : where,
      Altitude: v.position ? `${v.position.alt_msl_m.toFixed(1)} m above sea level` : "–",
      Heading: heading,
      ...(v.shared ? { Owner: v.owner } : { Battery: battery, Stations: v.stations.join(", ") || "–" }),
      Heard: Number.isFinite(v.link.since_heard_s) ? `${v.link.since_heard_s.toFixed(1)} s ago` : "never",
      ...(v.shared ? {} : { Identity: v.uid || "not reported" }),
    }
    : {
      Mode: `${v.mode}${v.armed ? " · armed" : ""}`,
      Position: where,
      Altitude: v.position ? `${v.position.alt_rel_m.toFixed(1)} m above home` : "–",
      Heading: heading,
      Speed: `${v.groundspeed_mps.toFixed(1)} m/s`,
      Battery: battery,
      GPS: `${v.gps.fix}, ${v.gps.satellites} satellites`,
      Mission: v.mission.total ? `item ${v.mission.current} of ${v.mission.total}` : "none",
      Link: `${v.link.state}, ${v.link.loss_pct.toFixed(1)}% loss, heard ${v.link.since_heard_s.toFixed(1)} s ago`,
      Signing: signingText(v.signing),
      Identity: v.uid || "not reported",
    };
  $("vehicle-values").innerHTML = Object.entries(values)
    .map(([k, val]) => `<dt>${k}</dt><dd>${escape(val)}</dd>`).join("");
  // Shared vehicles are someone else's: no history, no renaming.
  $("rename").hidden = Boolean(v.shared) || !allowed("pilot");
  $("control").hidden = site.kind !== "station" || !allowed("pilot");
  if (state.modesFor !== v.autopilot) {
    state.modesFor = v.autopilot;
    const modes = v.autopilot === "px4"
      ? ["Hold", "Mission", "Return", "Land", "Takeoff", "Position", "Altitude", "Manual"]
      : ["LOITER", "GUIDED", "AUTO", "RTL", "LAND", "BRAKE", "ALT_HOLD", "POSHOLD", "STABILIZE"];
    $("control-modes").innerHTML = modes.map((m) => `<option value="${m}">`).join("");
  }
}

/** MAVLink 2 signing as a line: on or off, and what the station dropped for it. */
function signingText(s) {
  if (!s?.on) return "off";
  const dropped = s.rejected_unsigned + s.rejected_bad + s.rejected_replayed;
  return dropped ? `on, ${dropped} frames dropped (unsigned ${s.rejected_unsigned}, `
    + `bad ${s.rejected_bad}, replayed ${s.rejected_replayed})` : "on";
}

// --- parameters (at a station) ---------------------------------------------------------------

/** The vehicle's parameters as the station last read them, and its drift from its profile. */
async function loadParams(key) {
  const v = state.vehicles.get(key)?.data;
  $("params").hidden = site.kind !== "station" || !v;
  if ($("params").hidden) return;
  $("params-fetch").hidden = !allowed("pilot");
  try {
    const p = await all(`/api/v1/vehicles/${v.sysid}/params`, "params");
    if (state.selected !== key) return;
    const read = p.complete
      ? `${p.params.length} parameters`
      : `${p.params.length} of ${p.count ?? "?"} parameters read`;
    const drift = p.drift?.differences ?? [];
    const profile = !p.profile ? "no profile applied"
      : !p.drift ? `follows ${p.profile}`
        : drift.length ? `${drift.length} drifted from ${p.profile}`
          : `matches ${p.profile}`;
    $("params-summary").textContent = `${read}; ${profile}`;
    $("params-summary").className = drift.length ? "drifted" : "";
    $("params-drift").innerHTML = drift.map((d) => `<li><b>${escape(d.name)}</b> ${
      d.vehicle === null ? "missing" : escape(d.vehicle)} (profile ${escape(d.profile)})</li>`).join("");
  } catch (err) {
    $("params-summary").textContent = err.message;
  }
}

/** A pilot asks the station to read the whole list again; the page follows the job. */
async function fetchParams() {
  const key = state.selected;
  const v = state.vehicles.get(key)?.data;
  if (!v) return;
  $("params-summary").textContent = "reading…";
  try {
    let job = await api(`/api/v1/vehicles/${v.sysid}/params/fetch`, { method: "POST" });
    while (job.outcome === "pending" || job.outcome === "in_progress") {
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await api(`/api/v1/commands/${job.id}`);
    }
    if (job.outcome !== "accepted") throw new Error(job.detail?.error || job.outcome);
    await loadParams(key);
  } catch (err) {
    $("params-summary").textContent = `could not read them: ${err.message}`;
  }
}

// --- commands (a pilot's, at a station) ----------------------------------------------------

/** Commands sent from this page, by id: their line in the log. */
const sent = new Map();
/** Outcomes streamed before their POST answered (a fast vehicle), by id. */
const early = new Map();

async function command(e) {
  const button = e.target.closest("button[data-command]");
  const v = state.vehicles.get(state.selected)?.data;
  if (!button || !v) return;
  const body = { command: button.dataset.command };
  if (body.command === "takeoff") body.alt_m = Number($("control-alt").value);
  if (body.command === "mode") body.mode = $("control-mode").value.trim();
  const line = document.createElement("li");
  line.textContent = `${v.name}: ${body.command} …`;
  $("control-log").prepend(line);
  try {
    const c = await api(`/api/v1/vehicles/${v.sysid}/commands`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    sent.set(c.id, { line, name: v.name });
    commandOutcome(c.id, c.description, c.outcome);
    if (early.has(c.id)) commandOutcome(c.id, ...early.get(c.id));
    early.clear();
  } catch (err) {
    line.textContent = `${v.name}: ${body.command}: ${err.message}`;
    line.className = "failed";
  }
}

/** A command's outcome, from its POST or the stream; only this page's commands are shown. */
function commandOutcome(id, description, outcome) {
  const c = sent.get(id);
  if (!c) {
    if (early.size > 100) early.clear();
    early.set(id, [description, outcome]);
    return;
  }
  c.line.textContent = `${c.name}: ${description}: ${outcome.replace("_", " ")}`;
  c.line.className = outcome;
  c.line.dataset.outcome = outcome;
}

async function loadChart(key) {
  const v = state.vehicles.get(key)?.data;
  if (!v) return;
  let samples = null;
  if (site.kind === "station") {
    // No from/to: the station's own last hour. A phone's clock and a Pi's (no real-time
    // clock) can be days apart.
    const history = await api(`/api/v1/vehicles/${v.sysid}/telemetry?every=10s`).catch(() => null);
    samples = history?.samples.map((s) => ({ t_us: s.t_us, alt: s.alt_rel_m, battery: s.battery_pct }));
  } else if (!v.shared) {
    // The last hour by the vehicle's own clock: its newest report, less an hour.
    const to = v.position ? Math.floor((Date.now() * 1000 + state.clockOffsetUs) / 1000) : Date.now();
    const history = await api(`${path(`vehicles/${v.id}/telemetry`)}?from=${to - 3_600_000}&limit=3600`)
      .catch(() => null);
    samples = history?.samples.map((s) => ({ t_us: s.t_us, alt: s.alt_msl_m, battery: s.battery_pct }));
  }
  if (state.selected !== key) return;
  drawChart(samples || [], v.shared ? "no history for a shared vehicle" : "no history yet");
}

function drawChart(samples, empty) {
  const canvas = $("vehicle-chart");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  // How many samples the chart shows, for tests and assistive tools.
  canvas.dataset.points = samples.length < 2 ? 0 : samples.length;
  if (samples.length < 2) {
    g.fillStyle = "#111";
    g.font = "16px system-ui";
    g.fillText(empty, 12, 24);
    return;
  }
  const t0 = samples[0].t_us;
  const t1 = samples[samples.length - 1].t_us;
  const line = (value, min, max, colour) => {
    g.strokeStyle = colour;
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((s, i) => {
      const x = ((s.t_us - t0) / Math.max(1, t1 - t0)) * (canvas.width - 20) + 10;
      const y = canvas.height - 10 - ((Math.max(min, value(s)) - min) / Math.max(1, max - min)) * (canvas.height - 20);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  };
  const alts = samples.map((s) => s.alt);
  const minAlt = site.kind === "hq" ? Math.min(...alts) : 0;
  line((s) => s.alt, minAlt, Math.max(minAlt + 10, ...alts), "#0047b3");
  line((s) => s.battery ?? 0, 0, 100, "#a85a00");
}

async function rename(e) {
  e.preventDefault();
  const name = $("rename-input").value.trim();
  const v = state.vehicles.get(state.selected)?.data;
  if (!v) return;
  const target = site.kind === "hq" ? path(`vehicles/${v.id}`) : `/api/v1/vehicles/${v.sysid}`;
  try {
    await api(target, {
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
  const stream = site.kind === "hq" ? path("stream") : "/api/v1/stream";
  const ws = new WebSocket(`${proto}//${location.host}${stream}?access_token=${encodeURIComponent(state.token)}`);
  ws.onopen = () => { delay = 1000; };
  ws.onmessage = (m) => {
    state.lastMessage = Date.now();
    const msg = JSON.parse(m.data);
    switch (msg.type) {
      case "hello":
        state.role = msg.token.role;
        $("who").textContent = `${msg.token.name} · ${msg.token.role}${msg.token.org ? ` · ${msg.token.org}` : ""}`;
        for (const el of document.querySelectorAll("[data-needs]")) {
          el.hidden = !allowed(el.dataset.needs);
        }
        renderAlerts();
        if (state.selected !== null) renderVehicle();
        // What the role may decide is known now.
        loadProposals().catch(() => {});
        break;
      // The station's.
      case "state": updateVehicle(msg.vehicle); break;
      case "alert":
        state.alerts.unshift(msg.event);
        renderAlerts();
        break;
      case "ack": acknowledged(msg.event); break;
      case "command": {
        const c = msg.event.command;
        if (c) commandOutcome(c.id, msg.event.message.replace(/ by .*$/, ""), c.outcome);
        break;
      }
      case "record": scheduleRecords(); break;
      case "station":
        state.sync = msg.sync;
        state.clockOffsetUs = msg.time_us - Date.now() * 1000;
        break;
      // HQ's.
      case "snapshot":
        for (const e of msg.entities) updateVehicle(fromEntity(e));
        break;
      case "vehicle": updateVehicle(fromEntity(msg.entity)); break;
      case "gone": removeVehicle(`${msg.owner}/${msg.id}`); break;
      case "event":
        // An acknowledgement names no alert here; the list says who acknowledged what.
        if (msg.event.kind === "alert" || msg.event.kind === "ack") loadAlerts().catch(() => {});
        break;
      case "records": scheduleRecords(); break;
      case "relay": state.clockOffsetUs = msg.time_us - Date.now() * 1000; break;
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
  recordsTimer = setTimeout(() => {
    loadRecords().catch(() => {});
    loadProposals().catch(() => {});
  }, 300);
}

function showStatus() {
  const live = Date.now() - state.lastMessage < OFFLINE_AFTER_MS;
  const status = $("status");
  status.className = `status ${live ? "live" : "offline"}`;
  let text = live ? "live" : site.kind === "hq" ? "relay unreachable" : "station offline";
  if (live && state.sync?.enrolled && !state.sync.connected) text += " · relay unreachable";
  status.textContent = text;
  $("app").classList.toggle("stale", !live);
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  const health = await fetch("/api/v1/health").then((r) => r.json());
  site.kind = health.service === "relay" ? "hq" : "station";
  document.body.dataset.site = site.kind;
  $("title").textContent = site.kind === "hq" ? "Trellis HQ" : "Trellis";
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
  $("control").addEventListener("click", command);
  $("params-fetch").addEventListener("click", fetchParams);
  $("control").addEventListener("submit", (e) => e.preventDefault());
  $("propose").addEventListener("submit", propose);
  initMap(health);
  if (site.kind === "hq") {
    // The token's org, and the picture to start from (the stream sends it again).
    const cop = await api("/api/v1/cop");
    site.org = cop.org;
    cop.entities.forEach((e) => updateVehicle(fromEntity(e)));
  } else {
    const vehicles = await all("/api/v1/vehicles", "vehicles");
    vehicles.vehicles.forEach(updateVehicle);
  }
  await loadAlerts();
  await loadRecords();
  await loadProposals();
  if (site.kind === "hq") {
    await loadEdges();
    setInterval(() => loadEdges().catch(() => {}), 5000);
    // Ages shown at HQ are computed here, from each vehicle's last report.
    setInterval(() => {
      for (const entry of state.vehicles.values()) {
        const v = entry.data;
        if (!v.position) continue;
        v.link.since_heard_s += 1;
        const lost = v.link.since_heard_s > HQ_LOST_AFTER_S ? "lost" : "ok";
        if (lost !== v.link.state) {
          v.link.state = lost;
          entry.marker?.setIcon(markerIcon(v));
        }
      }
      scheduleRender();
    }, 1000);
  }
  connect();
  setInterval(showStatus, 1000);
  setInterval(() => { if (state.selected !== null) loadChart(state.selected); }, 30000);
}

start().catch((e) => {
  if (e.message !== "unauthorized") {
    $("status").textContent = `error: ${e.message}`;
  }
});
