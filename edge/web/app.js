// Linli web console: health summary, login, live event feed, doors, the demo's simulated readers,
// test-event injection.
// Plain ES module, no framework and no build step: it ships inside the Python package.

const CSRF_HEADER = "X-Linli-Csrf";
const FEED_LIMIT = 500;           // rows kept on the page; older ones are in the journal
const HEALTH_EVERY_MS = 5000;
const STAFF = new Set(["installer", "manager", "admin"]);
const INJECTORS = new Set(["installer", "admin"]);
const UNLOCKERS = new Set(["manager", "admin"]);

const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  source: null,       // the EventSource of the live feed
  lastSeq: 0,         // highest seq shown; the stream resumes after it
  healthTimer: null,
  healthSoon: null,   // a refresh due shortly because events arrived
  doorsSoon: null,    // a door refresh due because door or access events arrived
  sim: null,          // the demo's simulator info (GET /api/sim), when there is one
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
  if (STAFF.has(me.role)) {
    startFeed();
    refreshDoors();
    loadSimulator();
  } else {
    notice(`The ${me.role} role has no access to the compound's event feed.`);
    setPill($("stream-state"), "no access", "muted");
  }
}

function leaveApp() {
  stopFeed();
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

// ---- the demo's simulated readers ---------------------------------------------------------------

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
}

function simCommand(template) {
  return template.replace("{reader}", $("sim-reader").value);
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
  for (const button of document.querySelectorAll("[data-sim]")) {
    button.addEventListener("click", () => simulate(simCommand(button.dataset.sim)));
  }
  refreshHealth();
  state.healthTimer = setInterval(refreshHealth, HEALTH_EVERY_MS);
  checkSession();
}

main();
