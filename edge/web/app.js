// Linli web console: health summary, login, live event feed, doors, the alarm panel, the camera,
// visitor passes, the demo's simulated devices (readers, alarm sensors, intercom), test-event injection.
// Plain ES module, no framework and no build step: it ships inside the Python package.

const CSRF_HEADER = "X-Linli-Csrf";
const FEED_LIMIT = 500;           // rows kept on the page; older ones are in the journal
const HEALTH_EVERY_MS = 5000;
const STAFF = new Set(["installer", "manager", "admin"]);
const INJECTORS = new Set(["installer", "admin"]);
const UNLOCKERS = new Set(["manager", "admin"]);
const ALARM_KEEPERS = new Set(["manager", "admin"]);  // arm and disarm the compound's partitions
const ALARM_POLL_MS = 1500;       // residents have no event stream: their panel is polled
const CAMERA_EVERY_MS = 1000;     // the camera's latest frame and detections
const CAMERA_ROWS = 6;            // detections listed under the image
const TOURS_EVERY_MS = 10000;     // the patrol tour log (also refreshed on patrol events)
const INTERCOM_SETTLE_MS = [300, 1200];  // the units ring just after the router's event: look twice

const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  source: null,       // the EventSource of the live feed
  lastSeq: 0,         // highest seq shown; the stream resumes after it
  healthTimer: null,
  healthSoon: null,   // a refresh due shortly because events arrived
  doorsSoon: null,    // a door refresh due because door or access events arrived
  sim: null,          // the demo's simulator info (GET /api/sim), when there is one
  simSoon: null,      // a simulator refresh due (zones, sirens) because alarm events arrived
  alarmSoon: null,    // an alarm refresh due because alarm or zone events arrived
  alarmTimer: null,   // polling for users without the event stream
  alarmTick: null,    // the countdowns' ticker
  alarmSeen: null,    // the alarm panel's data as last drawn
  camera: null,       // the camera shown in the camera card
  cameraTimer: null,
  cameraBusy: false,  // a frame is loading: skip a tick rather than pile requests up
  toursTimer: null,
  toursSoon: null,
};

// ---- API ---------------------------------------------------------------------------------

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  // The session cookie authenticates us; the server wants this header on every change so a
  // cross-site page cannot make the browser act for us.
  if (method !== "GET") headers[CSRF_HEADER] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch { data = null; }
  }
  return { ok: res.ok, status: res.status, data, headers: res.headers };
}

// ---- health --------------------------------------------------------------------------------

function setPill(el, text, tone) {
  el.textContent = text;
  el.className = `pill ${tone}`;
}

async function refreshHealth() {
  try {
    const { ok, data } = await api("/api/health");
    if (!ok || !data) throw new Error("no health");
    $("site-name").textContent = `${data.site} / ${data.controller}`;
    setPill($("h-status"), data.status, data.status === "ok" ? "good" : "warn");
    const uplinkTone = { connected: "good", disabled: "muted" }[data.uplink] ?? "warn";
    setPill($("h-uplink"), data.uplink, uplinkTone);
    $("h-outbox").textContent = data.outbox_depth.toLocaleString();
    $("h-accepted").textContent = data.journal.accepted.toLocaleString();
  } catch {
    setPill($("h-status"), "unreachable", "bad");
  }
}

// New events change the counters: refresh soon, at most once a second however busy the feed is.
function refreshHealthSoon() {
  if (state.healthSoon) return;
  state.healthSoon = setTimeout(() => { state.healthSoon = null; refreshHealth(); }, 1000);
}

// ---- session -----------------------------------------------------------------------------

function show(view) {
  $("login-view").hidden = view !== "login";
  $("app-view").hidden = view !== "app";
  $("user-box").hidden = view !== "app";
}

async function checkSession() {
  const { ok, data } = await api("/api/me");
  if (ok) {
    enterApp(data);
  } else {
    leaveApp();
  }
}

async function login(event) {
  event.preventDefault();
  const form = event.target;
  const err = $("login-error");
  err.textContent = "";
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const { ok, status, data, headers } = await api("/api/login", {
      method: "POST",
      body: { username: form.username.value, password: form.password.value },
    });
    if (ok) {
      form.password.value = "";
      await checkSession();
    } else if (status === 429) {
      err.textContent = `Too many failed attempts. Try again in ${headers.get("Retry-After") ?? "a few"} s.`;
    } else {
      err.textContent = data?.error ?? `Sign-in failed (${status}).`;
    }
  } catch {
    err.textContent = "The controller cannot be reached.";
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  await api("/api/logout", { method: "POST" });
  leaveApp();
}

function enterApp(me) {
  state.me = me;
  $("user-name").textContent = me.username;
  $("user-role").textContent = me.role;
  show("app");
  $("inject-panel").hidden = !INJECTORS.has(me.role);
  refreshAlarm();
  state.alarmTick = setInterval(tickAlarm, 1000);
  if (me.role === "resident") refreshPasses();
  if (STAFF.has(me.role)) {
    startFeed();
    refreshDoors();
    loadSimulator();
    loadCamera();
  } else {
    notice(`The ${me.role} role has no access to the compound's event feed.`);
    setPill($("stream-state"), "no access", "muted");
    state.alarmTimer = setInterval(refreshAlarm, ALARM_POLL_MS);
  }
}

function leaveApp() {
  stopFeed();
  clearInterval(state.alarmTimer);
  clearInterval(state.alarmTick);
  state.alarmTimer = state.alarmTick = state.alarmSeen = null;
  clearInterval(state.cameraTimer);
  clearInterval(state.toursTimer);
  state.cameraTimer = state.toursTimer = state.camera = null;
  $("camera-panel").hidden = true;
  $("passes-panel").hidden = true;
  $("pass-secret").hidden = true;
  $("alarm-panel").hidden = true;
  $("alarm-code").value = "";
  state.me = null;
  $("feed").replaceChildren();
  $("feed-empty").hidden = false;
  notice(null);
  show("login");
  $("login-form").username.focus();
}

// ---- live feed -----------------------------------------------------------------------------

function notice(text) {
  const el = $("feed-notice");
  el.hidden = !text;
  el.textContent = text ?? "";
}

function formatTime(iso) {
  const when = new Date(iso);
  const today = new Date().toDateString() === when.toDateString();
  const time = when.toLocaleTimeString([], { hour12: false });
  return today ? time : `${when.toLocaleDateString()} ${time}`;
}

function eventRow(rec) {
  const li = document.createElement("li");
  li.className = `event sev-${rec.severity}`;
  li.dataset.id = rec.id;
  li.dataset.seq = rec.seq;
  li.dataset.type = rec.type;

  const time = document.createElement("time");
  time.dateTime = rec.time;
  time.textContent = formatTime(rec.time);
  time.title = rec.time;

  const sev = document.createElement("span");
  sev.className = "sev";
  sev.textContent = rec.severity;

  const type = document.createElement("span");
  type.className = "type";
  type.textContent = rec.type;

  const source = document.createElement("span");
  source.className = "source";
  source.textContent = rec.source;

  const data = document.createElement("code");
  data.className = "data";
  const text = Object.keys(rec.data).length ? JSON.stringify(rec.data) : "";
  data.textContent = text.length > 160 ? `${text.slice(0, 157)}…` : text;
  data.title = text;

  li.append(time, sev, type, source, data);
  return li;
}

function addEvents(records, { top }) {
  const feed = $("feed");
  const rows = records.filter((r) => !top || r.seq > state.lastSeq).map(eventRow);
  if (top) {
    for (const row of rows) feed.prepend(row);
  } else {
    feed.append(...rows);
  }
  for (const r of records) state.lastSeq = Math.max(state.lastSeq, r.seq);
  while (feed.childElementCount > FEED_LIMIT) feed.lastElementChild.remove();
  $("feed-empty").hidden = feed.childElementCount > 0;
}

async function startFeed() {
  stopFeed();
  setPill($("stream-state"), "connecting", "muted");
  const { ok, data } = await api("/api/events?limit=100");
  if (ok) addEvents(data.events, { top: false });  // newest first, as the API returns them

  // `after` covers the first connection; on reconnects EventSource sends Last-Event-ID itself,
  // which the server prefers, so nothing between the page load and a reconnect is missed.
  const source = new EventSource(`/api/events/stream?after=${state.lastSeq}`);
  state.source = source;
  source.onopen = () => setPill($("stream-state"), "live", "good");
  source.onmessage = (msg) => {
    const rec = JSON.parse(msg.data);
    addEvents([rec], { top: true });
    refreshHealthSoon();
    if (/^(door|access|device|reader)\./.test(rec.type)) refreshDoorsSoon();
    if (/^(alarm|zone)\./.test(rec.type)) {
      refreshAlarmSoon();
      refreshSimSoon();
    }
    if (/^intercom\./.test(rec.type) || (rec.type.startsWith("device.") && rec.source.startsWith("unit-"))) {
      for (const ms of INTERCOM_SETTLE_MS) setTimeout(refreshSim, ms);
    }
    if (/^patrol\./.test(rec.type)) refreshToursSoon();
  };
  source.addEventListener("dropped", (msg) => {
    const { total } = JSON.parse(msg.data);
    notice(`${total} event(s) were skipped because this page fell behind. Reload to see them all.`);
  });
  source.onerror = async () => {
    if (source.readyState === EventSource.CLOSED) {
      // The server refused the stream (session expired?): find out whether to show the login.
      setPill($("stream-state"), "stopped", "bad");
      stopFeed();
      await checkSession();
    } else {
      setPill($("stream-state"), "reconnecting", "warn");
    }
  };
}

function stopFeed() {
  if (state.source) {
    state.source.close();
    state.source = null;
  }
}

// ---- doors -----------------------------------------------------------------------------------

function fact(text, tone) {
  const el = document.createElement("span");
  setPill(el, text, tone);
  return el;
}

function doorRow(door) {
  const s = door.state;
  const li = document.createElement("li");
  li.className = "door";
  li.dataset.door = door.id;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = door.name;
  li.append(name);
  if (door.remote_unlock.includes("api") && UNLOCKERS.has(state.me?.role)) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = "Unlock";
    button.addEventListener("click", () => unlockDoor(door.id, button));
    li.append(button);
  } else {
    li.append(document.createElement("span"));
  }
  const facts = document.createElement("div");
  facts.className = "facts";
  facts.append(fact(s.lock === "UNLOCKED" ? "unlocked" : "locked", s.lock === "UNLOCKED" ? "warn" : "good"));
  if (s.open !== null) facts.append(fact(s.open ? "open" : "closed", s.open ? "warn" : "muted"));
  if (s.forced_open) facts.append(fact("forced open", "bad"));
  if (s.held_open !== "none") facts.append(fact(`held open: ${s.held_open.replace("_", "-")}`, "bad"));
  if (s.lockdown) facts.append(fact("lockdown", "bad"));
  for (const f of s.faults) facts.append(fact(f.replaceAll("_", " "), "bad"));
  li.append(facts);
  return li;
}

async function refreshDoors() {
  const { ok, data } = await api("/api/doors");
  $("doors-panel").hidden = !ok;
  if (ok) $("doors").replaceChildren(...data.doors.map(doorRow));
}

function refreshDoorsSoon() {
  if (state.doorsSoon) return;
  state.doorsSoon = setTimeout(() => { state.doorsSoon = null; refreshDoors(); }, 250);
}

async function unlockDoor(id, button) {
  button.disabled = true;
  const out = $("door-result");
  const { ok, status, data } = await api(`/api/doors/${encodeURIComponent(id)}/unlock`, { method: "POST" });
  out.className = `result ${ok && data.unlocked ? "ok" : "error"}`;
  out.textContent = ok
    ? (data.unlocked ? `${id} unlocked.` : `${id} stayed locked (see the live events).`)
    : (data?.error ?? `Refused (${status})`);
  button.disabled = false;
  refreshDoors();
}


// ---- alarm -----------------------------------------------------------------------------------

// Home Assistant's alarm_control_panel states.
const ALARM_TONES = { disarmed: "muted", arming: "warn", pending: "warn", disarming: "warn", triggered: "bad" };
const COUNTDOWNS = { arming: "exit delay", pending: "entry delay", triggered: "siren" };
const ZONE_TONES = { normal: "muted", active: "warn", tamper: "bad", fault: "bad" };
const ZONE_WORDS = { normal: "closed", active: "open", tamper: "tamper", fault: "fault" };

const alarmTone = (s) => (s.startsWith("armed_") ? "good" : ALARM_TONES[s] ?? "muted");
const words = (s) => s.replaceAll("_", " ");

function partitionRow(p, zones) {
  const li = document.createElement("li");
  li.className = `partition state-${p.state}`;
  li.dataset.partition = p.partition;

  const head = document.createElement("div");
  head.className = "head";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = p.apartment ? `Home ${p.apartment}` : words(p.partition);
  const status = fact(words(p.state), alarmTone(p.state));
  status.classList.add("alarm-state");
  const countdown = document.createElement("span");
  countdown.className = "countdown";
  if (p.deadline && COUNTDOWNS[p.state]) {
    countdown.dataset.deadline = p.deadline;
    countdown.dataset.label = COUNTDOWNS[p.state];
  }
  head.append(name, status, countdown);
  li.append(head);

  const list = document.createElement("div");
  list.className = "facts zones";
  for (const z of zones) {
    const el = fact(`${z.zone}: ${z.bypassed ? "bypassed" : ZONE_WORDS[z.state] ?? z.state}`,
      z.bypassed ? "muted" : ZONE_TONES[z.state] ?? "muted");
    el.dataset.zone = z.zone;
    el.title = `${z.type} zone, ${z.device} ${z.point}`;
    if (p.alarm_zones.includes(z.zone)) el.classList.add("bad");
    list.append(el);
  }
  for (const t of p.troubles) list.append(fact(`${t.device}: ${words(t.kind)}`, "bad"));
  li.append(list);

  if (p.alarm_memory.length && p.state !== "triggered") {
    const memory = document.createElement("p");
    memory.className = "memory";
    memory.textContent = `Alarm memory: ${[...new Set(p.alarm_memory.map((m) => m.zone))].join(", ")}`;
    li.append(memory);
  }
  if (p.locked_out_until && p.locked_out_until > Date.now() / 1000) {
    li.append(fact("code entry locked out", "bad"));
  }

  const actions = document.createElement("div");
  actions.className = "row buttons";
  const button = (text, cls, run) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = text;
    b.addEventListener("click", () => run(b));
    return b;
  };
  // The API's rule: a resident acts on their own home, managers and admins on the compound's.
  const role = state.me?.role;
  const mayChange = role === "resident" || (ALARM_KEEPERS.has(role) && !p.apartment);
  if (p.state === "disarmed") {
    actions.append(
      button("Arm away", "secondary", (b) => alarmAction(p.partition, "arm", "away", b)),
      button("Arm home", "secondary", (b) => alarmAction(p.partition, "arm", "home", b)),
    );
  } else {
    actions.append(button("Disarm", "danger", (b) => alarmAction(p.partition, "disarm", null, b)));
  }
  if (mayChange) li.append(actions);
  return li;
}

async function refreshAlarm() {
  const [parts, zones] = await Promise.all([api("/api/alarm/partitions"), api("/api/alarm/zones")]);
  const ok = parts.ok && zones.ok && parts.data.partitions.length > 0;
  $("alarm-panel").hidden = !ok;
  if (!ok) return;
  // Polled every few seconds: redraw only on a change, so a button is never swapped under the pointer.
  const seen = JSON.stringify([parts.data, zones.data]);
  if (seen === state.alarmSeen) return;
  state.alarmSeen = seen;
  $("partitions").replaceChildren(
    ...parts.data.partitions.map((p) => partitionRow(p, zones.data.zones.filter((z) => z.partition === p.partition))),
  );
  tickAlarm();
}

function refreshAlarmSoon() {
  if (state.alarmSoon) return;
  state.alarmSoon = setTimeout(() => { state.alarmSoon = null; refreshAlarm(); }, 250);
}

function tickAlarm() {
  const now = Date.now() / 1000;
  for (const el of document.querySelectorAll("#partitions [data-deadline]")) {
    const left = Math.max(0, Math.ceil(Number(el.dataset.deadline) - now));
    el.textContent = `${el.dataset.label} ${left} s`;
  }
}

async function alarmAction(partition, action, mode, button) {
  const out = $("alarm-result");
  const code = $("alarm-code").value.trim();
  if (!code) {
    out.className = "result error";
    out.textContent = "Enter a user code first.";
    $("alarm-code").focus();
    return;
  }
  button.disabled = true;
  const body = action === "arm" ? { mode, code } : { code };
  const { ok, status, data, headers } = await api(
    `/api/alarm/partitions/${encodeURIComponent(partition)}/${action}`, { method: "POST", body },
  );
  out.className = `result ${ok ? "ok" : "error"}`;
  if (ok) {
    out.textContent = `${partition}: ${words(data.state)}.`;
    $("alarm-code").value = "";
  } else if (status === 429) {
    out.textContent = `Code entry locked out. Try again in ${headers.get("Retry-After") ?? "a few"} s.`;
  } else {
    // "refused: wrong_code (...)" -> "Refused: wrong code (...)"
    out.textContent = (data?.error ?? `Refused (${status})`).replace(/^refused: (\w+)/, (_, r) => `Refused: ${words(r)}`);
  }
  button.disabled = false;
  refreshAlarm();
}

// ---- the demo's simulated devices ---------------------------------------------------------------

async function loadSimulator() {
  const { ok, data } = await api("/api/sim");
  $("sim-panel").hidden = !ok;
  if (!ok) return;
  state.sim = data;
  $("sim-reader").replaceChildren(...data.readers.map((r) => new Option(r, r)));
  const people = data.people.map((p, i) => new Option(p.apartment ? `${p.name} (${p.apartment})` : p.name, i));
  people.push(new Option("Someone unknown", "unknown"));
  $("sim-person").replaceChildren(...people);
  pickPerson();
  const units = data.intercom.units.filter((u) => u.apartment !== "guard");
  $("ic-apartment").replaceChildren(...units.map((u) => new Option(`${u.apartment} ${u.name}`, u.apartment)));
  $("ic-hint").textContent = `Li Wei's visitor PIN: ${data.intercom.visitor_pin}.`;
  renderSimAlarm(data);
  renderSimIntercom(data.intercom);
}

// The alarm zones' sensors (a button each: trip or restore) and what the sirens were told to do.
function renderSimAlarm(data) {
  const codes = data.codes.map((c) => `${c.code} ${c.duress ? "duress, " : ""}${c.user} (${c.partitions.join(", ")})`);
  $("sim-codes").textContent = `Codes: ${codes.join("; ")}.`;
  $("sim-zones").replaceChildren(...data.zones.map((z) => {
    const li = document.createElement("li");
    li.dataset.zone = z.id;
    const name = document.createElement("span");
    name.textContent = z.name;
    const b = document.createElement("button");
    b.type = "button";
    b.className = z.active ? "danger" : "secondary";
    b.textContent = z.active ? "Restore" : "Trip";
    b.disabled = z.active === null;
    b.addEventListener("click", () => simulate(`zone ${z.id} ${z.active ? "off" : "on"}`));
    li.append(name, b);
    return li;
  }));
  $("sim-sirens").replaceChildren(...Object.entries(data.sirens).map(([id, on]) => {
    const el = fact(`${id}: ${on === null ? "?" : on ? "sounding" : "off"}`, on ? "bad" : "muted");
    el.dataset.siren = id;
    return el;
  }));
}

async function refreshSim() {
  if (!state.sim) return;
  const { ok, data } = await api("/api/sim");
  if (!ok) return;
  state.sim = data;
  renderSimAlarm(data);
  renderSimIntercom(data.intercom);
}

// The gate panel (its display and call) and each indoor unit: ringing or in a call, and its buttons.
function renderSimIntercom(ic) {
  const panel = [fact(`panel: ${ic.call_state ?? "idle"}`, { ringing: "warn", answered: "good" }[ic.call_state] ?? "muted")];
  if (ic.display) panel.push(fact(`display: ${ic.display}`, "muted"));
  $("ic-panel").replaceChildren(...panel);
  $("ic-units").replaceChildren(...ic.units.map((u) => {
    const li = document.createElement("li");
    li.className = "unit";
    li.dataset.unit = u.apartment;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = u.apartment === "guard" ? u.name : `${u.apartment} ${u.name}`;
    const status = u.ringing ? fact("ringing", "warn") : u.in_call ? fact("in call", "good") : fact(u.dnd ? "do not disturb" : "idle", "muted");
    status.classList.add("unit-state");
    const buttons = document.createElement("div");
    buttons.className = "row buttons";
    const button = (text, verb, enabled, cls = "secondary") => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = cls;
      b.textContent = text;
      b.disabled = !enabled;
      b.addEventListener("click", () => simulate(`${verb} ${u.apartment}`));
      return b;
    };
    // Unlock stays available: the router allows it for a grace time after the call ends.
    buttons.append(
      button("Answer", "answer", u.ringing, u.ringing ? "" : "secondary"),
      button("Unlock", "unlock", true),
      button("Hang up", "hangup", u.ringing || u.in_call, "danger"),
    );
    li.append(name, status, buttons);
    return li;
  }));
}

function refreshSimSoon() {
  if (!state.sim || state.simSoon) return;
  state.simSoon = setTimeout(() => { state.simSoon = null; refreshSim(); }, 250);
}

function pickPerson() {
  const value = $("sim-person").value;
  const person = value === "unknown" ? null : state.sim.people[Number(value)];
  $("sim-card").value = person ? person.card : 40000 + Math.floor(Math.random() * 20000);
  $("sim-pin").value = person?.pin ?? "";
}

async function simulate(command) {
  const out = $("sim-result");
  const { ok, status, data } = await api("/api/sim", { method: "POST", body: { command } });
  out.className = `result ${ok ? "ok" : "error"}`;
  out.textContent = ok ? `${data.done[0].toUpperCase()}${data.done.slice(1)}.` : (data?.error ?? `Refused (${status})`);
  refreshSimSoon();
}

function simCommand(template) {
  return template.replace("{reader}", $("sim-reader").value);
}

function passAtPanel(verb) {
  const secret = $("ic-secret").value.trim();
  if (!secret) {
    $("sim-result").className = "result error";
    $("sim-result").textContent = "Type a pass PIN or paste a QR token first.";
    $("ic-secret").focus();
    return;
  }
  simulate(`${verb} ${secret}`);
}

// ---- the camera ------------------------------------------------------------------------------

async function loadCamera() {
  const { ok, data } = await api("/api/vision/cameras");
  $("camera-panel").hidden = !ok || data.cameras.length === 0;
  if ($("camera-panel").hidden) return;
  state.camera = data.cameras[0].camera;
  renderCamera(data.cameras[0]);
  state.cameraTimer = setInterval(refreshCamera, CAMERA_EVERY_MS);
  refreshTours();
  state.toursTimer = setInterval(refreshTours, TOURS_EVERY_MS);
}

async function refreshCamera() {
  if (!state.camera || state.cameraBusy) return;
  state.cameraBusy = true;
  const id = encodeURIComponent(state.camera);
  try {
    const img = $("camera-image");
    const loaded = new Promise((resolve) => { img.onload = img.onerror = resolve; });
    img.src = `/api/vision/cameras/${id}/latest.jpg?t=${Date.now()}`;
    const [{ ok, data }] = await Promise.all([api(`/api/vision/cameras/${id}`), loaded]);
    if (ok) renderCamera(data);
  } finally {
    state.cameraBusy = false;
  }
}

function renderCamera(cam) {
  setPill($("camera-state"), cam.online ? `${cam.camera} online` : `${cam.camera} offline`, cam.online ? "good" : "bad");
  $("camera-state").title = cam.reason;
  $("camera-zones").replaceChildren(...Object.entries(cam.zones).map(([zone, counts]) => {
    const seen = Object.entries(counts).filter(([, n]) => n > 0).map(([what, n]) => `${n} ${what}`);
    const el = fact(`${zone}: ${seen.join(", ") || "empty"}`, seen.length ? "warn" : "muted");
    el.dataset.zone = zone;
    return el;
  }));
  // The most certain few: a busy street would push the rest of the page down.
  const objects = [...cam.objects].sort((a, b) => b.score - a.score);
  const rows = objects.slice(0, CAMERA_ROWS).map((o) => {
    const li = document.createElement("li");
    li.dataset.track = o.track_id;
    li.textContent = `${o.label} #${o.track_id} ${o.score.toFixed(2)}${o.zones.length ? ` in ${o.zones.join(", ")}` : ""}`
      + (o.stationary ? " (still)" : "");
    return li;
  });
  if (objects.length > CAMERA_ROWS) {
    const more = document.createElement("li");
    more.className = "more";
    more.textContent = `and ${objects.length - CAMERA_ROWS} more`;
    rows.push(more);
  }
  $("camera-objects").replaceChildren(...rows);
}

async function refreshTours() {
  const { ok, data } = await api("/api/vision/patrol/tours?limit=5");
  if (!ok) {
    $("patrol-tours").replaceChildren();
    return;
  }
  const time = (iso) => (iso ? formatTime(iso) : "");
  $("patrol-tours").replaceChildren(...data.tours.map((t) => {
    const li = document.createElement("li");
    li.dataset.tour = t.tour;
    const head = document.createElement("div");
    head.className = "head";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${t.route} ${time(t.started_at)}`;
    head.append(name, t.finished_at ? fact(`done: ${t.reached}/${t.total} reached`, t.missed ? "bad" : "good")
      : fact("running", "warn"));
    const checkpoints = document.createElement("div");
    checkpoints.className = "facts";
    for (const c of t.checkpoints) {
      const tone = { reached: c.late ? "warn" : "good", missed: "bad" }[c.state] ?? "muted";
      const el = fact(`${c.name}: ${c.state}${c.reached_at ? ` ${time(c.reached_at)}` : ""}`, tone);
      el.dataset.checkpoint = c.checkpoint;
      checkpoints.append(el);
    }
    li.append(head, checkpoints);
    return li;
  }));
}

function refreshToursSoon() {
  if (!state.camera || state.toursSoon) return;
  state.toursSoon = setTimeout(() => { state.toursSoon = null; refreshTours(); }, 500);
}

// ---- visitor passes (residents) ------------------------------------------------------------

function passState(p) {
  if (p.revoked) return ["revoked", "muted"];
  if (new Date(p.valid_until) < new Date()) return ["expired", "muted"];
  if (p.uses >= p.max_uses) return ["used up", "muted"];
  return ["valid", "good"];
}

async function refreshPasses() {
  const { ok, data } = await api("/api/passes");
  $("passes-panel").hidden = !ok;
  if (!ok) return;
  $("passes").replaceChildren(...data.passes.map((p) => {
    const li = document.createElement("li");
    li.className = "pass";
    li.dataset.pass = p.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${p.visitor} (${p.kind.toUpperCase()})`;
    const [text, tone] = passState(p);
    const detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = `${p.uses}/${p.max_uses} used, ${p.doors.join(", ")}, until ${formatTime(p.valid_until)}`;
    li.append(name, fact(text, tone), detail);
    if (text === "valid") {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "danger";
      b.textContent = "Revoke";
      b.addEventListener("click", () => revokePass(p, b));
      li.append(b);
    }
    return li;
  }));
}

async function issuePass(event) {
  event.preventDefault();
  const form = event.target;
  const out = $("pass-result");
  const button = form.querySelector("button");
  button.disabled = true;
  const body = {
    visitor: form.visitor.value.trim(),
    kind: form.kind.value,
    doors: form.doors.value.split(",").map((d) => d.trim()).filter(Boolean),
    valid_until: new Date(Date.now() + Number(form.hours.value) * 3600e3).toISOString(),
    max_uses: Number(form.uses.value),
  };
  try {
    const { ok, status, data } = await api("/api/passes", { method: "POST", body });
    out.className = `result ${ok ? "ok" : "error"}`;
    out.textContent = ok ? `Pass issued for ${data.pass.visitor}.` : (data?.error ?? `Refused (${status})`);
    const secret = $("pass-secret");
    secret.hidden = !ok;
    if (ok) {
      // The box keeps only a hash: this is the one time the secret can be read.
      const what = data.pass.kind === "pin" ? "PIN, to type at the gate panel's keypad"
        : "QR token, for the gate panel's scanner";
      const value = document.createElement("code");
      value.id = "pass-secret-value";
      value.textContent = data.secret;
      const note = document.createElement("span");
      note.textContent = `Give ${data.pass.visitor} this ${what}. It is shown only now.`;
      secret.replaceChildren(value, note);
    }
  } finally {
    button.disabled = false;
  }
  refreshPasses();
}

async function revokePass(p, button) {
  button.disabled = true;
  const { ok, status, data } = await api(`/api/passes/${encodeURIComponent(p.id)}`, { method: "DELETE" });
  $("pass-result").className = `result ${ok ? "ok" : "error"}`;
  $("pass-result").textContent = ok ? `Pass for ${p.visitor} revoked.` : (data?.error ?? `Refused (${status})`);
  refreshPasses();
}

// ---- inject ----------------------------------------------------------------------------------

async function inject(event) {
  event.preventDefault();
  const form = event.target;
  const out = $("inject-result");
  out.className = "result";
  let data = {};
  const raw = form.data.value.trim();
  if (raw) {
    try { data = JSON.parse(raw); } catch (e) {
      out.textContent = `Data is not valid JSON: ${e.message}`;
      out.classList.add("error");
      return;
    }
  }
  const body = { type: form.type.value.trim(), source: form.source.value.trim(), severity: form.severity.value, data };
  const { status, data: reply } = await api("/api/events", { method: "POST", body });
  if (status === 201) {
    out.textContent = `Accepted: ${reply.event.type} #${reply.seq}`;
    out.classList.add("ok");
  } else {
    out.textContent = reply?.error ?? `Refused (${status})`;
    out.classList.add("error");
  }
}

// ---- start -----------------------------------------------------------------------------------

function main() {
  $("login-form").addEventListener("submit", login);
  $("inject-form").addEventListener("submit", inject);
  $("logout").addEventListener("click", logout);
  $("sim-person").addEventListener("change", pickPerson);
  $("sim-present").addEventListener("click", () => simulate(simCommand(`card {reader} ${$("sim-card").value}`)));
  $("sim-type").addEventListener("click", () => simulate(simCommand(`pin {reader} ${$("sim-pin").value}`)));
  $("ic-call").addEventListener("click", () => simulate(`call ${$("ic-apartment").value}`));
  $("ic-code").addEventListener("click", () => passAtPanel("code"));
  $("ic-qr").addEventListener("click", () => passAtPanel("qr"));
  $("pass-form").addEventListener("submit", issuePass);
  for (const button of document.querySelectorAll("[data-sim]")) {
    button.addEventListener("click", () => simulate(simCommand(button.dataset.sim)));
  }
  refreshHealth();
  state.healthTimer = setInterval(refreshHealth, HEALTH_EVERY_MS);
  checkSession();
}

main();
