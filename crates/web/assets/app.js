// umlkit web view: topology, machine states (live over a WebSocket),
// per-machine panel with a terminal (xterm.js over a WebSocket to a tty
// exec shell), lab and machine controls. API: docs/web.md.
"use strict";

const $ = (s) => document.querySelector(s);
const state = { labs: [], lab: null, status: null, selected: null, term: null, termWs: null, fit: null, events: null, svgReady: false };
window.umlkit = state;

function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

function showMessage(text, info) {
  const m = $("#message");
  m.textContent = text;
  m.className = info ? "info" : "";
  m.hidden = !text;
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  const ty = r.headers.get("content-type") || "";
  const body = ty.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || body || r.statusText);
  return body;
}

function labPath(rest) {
  return "/api/labs/" + encodeURIComponent(state.lab.id) + rest;
}

function fmtUptime(s) {
  if (s == null) return "";
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function fmtMem(m, live) {
  let t = m.mem_mb + " MiB";
  if (live && live.host_rss_kb) t += " (host RSS " + Math.round(live.host_rss_kb / 1024) + " MiB)";
  return t;
}

// Elements of the SVG drawing a machine or a domain: the Graphviz layout's
// `machine-NAME` / `domain-NAME` groups, else the shape before the label.
function svgShapes(svg, kind, name) {
  const byId = svg.querySelector('[id="' + kind + "-" + CSS.escape(name) + '"]');
  if (byId) {
    const inner = byId.querySelectorAll("rect, ellipse, polygon, path, circle");
    return { root: byId, shapes: inner.length ? Array.from(inner) : [byId] };
  }
  const want = kind === "machine" ? "rect" : "ellipse";
  for (const t of svg.querySelectorAll("text")) {
    const prev = t.previousElementSibling;
    if (t.textContent === name && prev && prev.tagName.toLowerCase() === want) {
      return { root: prev, shapes: [prev], label: t };
    }
  }
  return null;
}

async function loadTopology() {
  state.svgReady = false;
  const text = await api(labPath("/topology.svg"));
  const box = $("#topology");
  box.innerHTML = text;
  const svg = box.querySelector("svg");
  if (!svg) return;
  // fit the box (the viewBox keeps the proportions)
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  for (const m of state.lab.machines) {
    const s = svgShapes(svg, "machine", m);
    if (!s) continue;
    for (const el of new Set([s.root, ...s.shapes, s.label].filter(Boolean))) {
      el.dataset.machine = m;
      el.classList.add("web-machine");
      el.addEventListener("click", () => select(m));
    }
    // only the shapes are painted (a group's fill would reach its label)
    for (const el of s.shapes) el.dataset.shape = "1";
  }
  for (const d of state.lab.domains) {
    const s = svgShapes(svg, "domain", d);
    if (s) s.root.dataset.domain = d;
  }
  state.svgReady = true;
  paint();
}

function paint() {
  const st = state.status;
  if (!st) return;
  const doc = st.status;
  $("#lab-name").textContent = doc.lab + " — " + doc.dir;
  const tbody = $("#machines tbody");
  tbody.textContent = "";
  // natural order: pc2 before pc10
  const byName = new Intl.Collator(undefined, { numeric: true }).compare;
  const rows = [...doc.machines].sort((a, b) => byName(a.name, b.name));
  for (const m of rows) {
    const live = st.live[m.name] || {};
    const tr = document.createElement("tr");
    tr.className = "machine-row" + (state.selected === m.name ? " selected" : "");
    tr.id = "row-machine-" + m.name;
    tr.dataset.machine = m.name;
    tr.dataset.state = m.state;
    const cells = [m.name, "", fmtUptime(live.uptime_s), fmtMem(m, live)];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      if (i === 1) {
        const b = document.createElement("span");
        b.className = "state state-" + m.state;
        b.textContent = m.state;
        td.appendChild(b);
      } else td.textContent = c;
      tr.appendChild(td);
    });
    tr.addEventListener("click", () => select(m.name));
    tbody.appendChild(tr);
  }
  const dbody = $("#domains tbody");
  dbody.textContent = "";
  for (const d of doc.domains) {
    const tr = document.createElement("tr");
    tr.id = "row-domain-" + d.name;
    tr.dataset.domain = d.name;
    tr.dataset.state = d.state;
    const members = doc.links.filter((l) => l.domain === d.name).map((l) => l.machine + ":" + l.interface + (l.link ? " (" + l.link + ")" : ""));
    [d.name, d.state + (d.link ? ", " + d.link : ""), members.join(" ")].forEach((c) => {
      const td = document.createElement("td");
      td.textContent = c;
      tr.appendChild(td);
    });
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.textContent = "counters";
    b.disabled = d.state !== "running";
    b.addEventListener("click", () => showCounters(d.name));
    td.appendChild(b);
    if (d.state === "running") {
      const a = document.createElement("a");
      a.className = "capture";
      a.textContent = "capture 10 s";
      a.title = "download 10 seconds of this domain's traffic as pcapng";
      a.href = labPath("/domains/" + encodeURIComponent(d.name) + "/capture?seconds=10");
      a.setAttribute("download", "");
      td.appendChild(document.createTextNode(" "));
      td.appendChild(a);
    }
    tr.appendChild(td);
    dbody.appendChild(tr);
  }
  const svg = $("#topology svg");
  if (svg) {
    for (const m of doc.machines) {
      for (const el of svg.querySelectorAll('[data-machine="' + CSS.escape(m.name) + '"]')) {
        el.dataset.state = m.state;
        for (const c of Array.from(el.classList)) if (c.startsWith("web-state-")) el.classList.remove(c);
        if (el.dataset.shape) el.classList.add("web-state-" + m.state);
        el.classList.toggle("web-selected", state.selected === m.name && !!el.dataset.shape);
      }
    }
  }
  const probs = (st.problems || []).map((p) =>
    p.kind === "dead_switch" ? "the switch of domain " + p.domain + " is dead" :
    p.kind === "lost_links" ? p.machine + " lost its link to domain " + p.domains.join(", ") :
    p.kind === "dead_capture" ? "the capture " + p.capture + " ended early (see " + p.log + ")" :
    p.machine + " is " + p.kind);
  const pb = $("#problems");
  pb.textContent = probs.join("\n");
  pb.hidden = !probs.length;
  paintPanel();
}

function paintPanel() {
  const name = state.selected;
  if (!name || !state.status) return;
  const m = state.status.status.machines.find((x) => x.name === name);
  if (!m) return;
  const live = state.status.live[name] || {};
  const ps = $("#panel-state");
  ps.textContent = m.state;
  ps.className = "state state-" + m.state;
  ps.dataset.state = m.state;
  const ifs = m.interfaces.map((i) => i.name + " " + i.domain + " " + i.mac + " " + i.addresses.join(" ")).join(" · ");
  $("#panel-info").textContent = "up " + (fmtUptime(live.uptime_s) || "-") + " · " + fmtMem(m, live) + (ifs ? " · " + ifs : "");
}

async function showCounters(domain) {
  const box = $("#counters");
  try {
    const c = await api(labPath("/domains/" + encodeURIComponent(domain) + "/counters"));
    box.textContent = "domain " + domain + "\n" + c.port_stats + (c.link_show ? "\n" + c.link_show : "");
  } catch (e) {
    box.textContent = String(e.message || e);
  }
  box.hidden = false;
}

async function loadLog() {
  const name = state.selected;
  $("#log").textContent = "loading…";
  try {
    const text = await api(labPath("/machines/" + encodeURIComponent(name) + "/log"));
    $("#log").textContent = text || "(no boot or startup log output)";
  } catch (e) {
    $("#log").textContent = String(e.message || e);
  }
}

function closeTerminal() {
  if (state.termWs) { state.termWs.onclose = null; state.termWs.close(); state.termWs = null; }
  if (state.term) { state.term.dispose(); state.term = null; }
}

function openTerminal(name, force) {
  closeTerminal();
  const term = new Terminal({ cursorBlink: true, fontSize: 13, convertEol: false });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open($("#terminal"));
  fit.fit();
  state.term = term;
  state.fit = fit;
  const m = state.status && state.status.status.machines.find((x) => x.name === name);
  // a shell needs a running kernel (boot steps done or not)
  if (!force && m && !["running", "booting", "failed", "interrupted"].includes(m.state)) {
    term.write("\x1b[33m" + name + " is " + m.state + ": start it to get a shell\x1b[0m\r\n");
    return;
  }
  const ws = new WebSocket(wsUrl(labPath("/machines/" + encodeURIComponent(name) + "/terminal?rows=" + term.rows + "&cols=" + term.cols)));
  ws.binaryType = "arraybuffer";
  state.termWs = ws;
  const enc = new TextEncoder();
  ws.onopen = () => term.focus();
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const msg = JSON.parse(ev.data);
      term.write("\r\n\x1b[33m[" + (msg.error ? "error: " + msg.error : "shell ended (" + msg.exit + ")") + "]\x1b[0m\r\n");
    } else {
      term.write(new Uint8Array(ev.data));
    }
  };
  ws.onclose = () => { if (state.termWs === ws) term.write("\r\n\x1b[33m[disconnected]\x1b[0m\r\n"); };
  term.onData((d) => { if (ws.readyState === 1) ws.send(enc.encode(d)); });
  term.onResize(({ rows, cols }) => { if (ws.readyState === 1) ws.send(JSON.stringify({ resize: [rows, cols] })); });
}

// The text on the terminal's screen (for tests and copy).
state.termText = () => {
  const t = state.term;
  if (!t) return "";
  const b = t.buffer.active;
  const lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join("\n");
};

function select(name) {
  state.selected = name;
  $("#panel").hidden = false;
  $("#panel-name").textContent = name;
  paint();
  openTerminal(name);
  loadLog();
}

async function act(action, machines) {
  const what = machines.length ? machines.join(", ") : "the lab";
  showMessage(action + " " + what + "…", true);
  document.querySelectorAll("button[data-lab-action], button[data-machine-action]").forEach((b) => (b.disabled = true));
  try {
    await api(labPath("/action"), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ action, machines }) });
    showMessage("");
    // the machine was just started: its shell is there even if the last
    // pushed status is older
    const mine = machines.length === 0 || machines.includes(state.selected);
    if (state.selected && mine && action !== "stop" && action !== "crash") openTerminal(state.selected, true);
  } catch (e) {
    showMessage(action + " " + what + ": " + (e.message || e));
  } finally {
    document.querySelectorAll("button[data-lab-action], button[data-machine-action]").forEach((b) => (b.disabled = false));
  }
}

function connectEvents() {
  if (state.events) { state.events.onclose = null; state.events.close(); }
  const ws = new WebSocket(wsUrl(labPath("/events")));
  state.events = ws;
  ws.onopen = () => { $("#conn").textContent = "live"; };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "status") {
      state.status = msg.data;
      paint();
    } else if (msg.type === "error") {
      showMessage(msg.error);
    }
  };
  ws.onclose = () => {
    $("#conn").textContent = "disconnected, retrying…";
    setTimeout(() => { if (state.events === ws) connectEvents(); }, 2000);
  };
}

async function openLab(id) {
  state.lab = state.labs.find((l) => l.id === id);
  state.status = null;
  state.selected = null;
  $("#panel").hidden = true;
  closeTerminal();
  connectEvents();
  await loadTopology();
}

async function main() {
  $("#panel-close").addEventListener("click", () => { $("#panel").hidden = true; state.selected = null; closeTerminal(); paint(); });
  $("#log-refresh").addEventListener("click", (e) => { e.preventDefault(); loadLog(); });
  document.querySelectorAll("button[data-lab-action]").forEach((b) => b.addEventListener("click", () => act(b.dataset.labAction, [])));
  document.querySelectorAll("button[data-machine-action]").forEach((b) => b.addEventListener("click", () => act(b.dataset.machineAction, [state.selected])));
  window.addEventListener("resize", () => { if (state.fit) state.fit.fit(); });
  const sel = $("#lab-select");
  sel.addEventListener("change", () => openLab(sel.value));
  try {
    await refreshLabs();
  } catch (e) {
    showMessage(String(e.message || e));
    return;
  }
  if (!state.labs.length) showMessage("no lab runs yet: labs started later appear here", true);
  // labs started after the page (`umlkit web`) join the list
  setInterval(() => refreshLabs().catch(() => {}), 5000);
}

async function refreshLabs() {
  const labs = await api("/api/labs");
  const sel = $("#lab-select");
  for (const l of labs) {
    if (state.labs.some((x) => x.id === l.id)) continue;
    state.labs.push(l);
    const o = document.createElement("option");
    o.value = l.id;
    o.textContent = l.name;
    sel.appendChild(o);
  }
  sel.hidden = state.labs.length < 2;
  if (!state.lab && state.labs.length) {
    showMessage("");
    await openLab(state.labs[0].id);
  }
}

main();
