// Precovery SRE console: plain JS, no build step, no third-party code.
// Data: /v1/systems (fleet), /v1/systems/{s}/history (charts), /v1/recommendations and
// its event stream (feed), /v1/alerts, POST /v1/feedback (buttons). Text only through
// textContent: nothing from the API is ever parsed as HTML.
"use strict";

const KEY_ITEM = "precovery.apiKey";
const MAX_FEED = 200;
const $ = (id) => document.getElementById(id);
const fmtUsd = (v) => (v === null || v === undefined ? "–" :
  "$" + Math.round(v).toLocaleString("en-US"));
const fmtRisk = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");

function authHeaders() {
  const key = sessionStorage.getItem(KEY_ITEM);
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (!res.ok) {
    let why = res.status + "";
    try { const body = await res.json(); why += " " + (body.reason || body.error); } catch (_) { /* not JSON */ }
    throw new Error(why);
  }
  return res.json();
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text) { $("status").textContent = text; }

// -- fleet ------------------------------------------------------------------------------
const cards = new Map();

function card(system) {
  let c = cards.get(system);
  if (c) return c;
  const root = el("div", "card system-card");
  root.dataset.system = system;
  const name = el("div", "name", system);
  const figs = el("div", "figs");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 300 70");
  svg.setAttribute("preserveAspectRatio", "none");
  const legend = el("div", "legend", "health (green, 0–100) · risk (red, 0–100%) · last hours");
  root.append(name, figs, svg, legend);
  $("fleet").append(root);
  c = { root, figs, svg };
  cards.set(system, c);
  return c;
}

function fig(label, value) {
  const span = el("span", "", label + " ");
  span.append(el("b", "", value));
  return span;
}

async function refreshFleet() {
  const systems = await api("/v1/systems");
  const before = cards.size;
  for (const s of systems) {
    const c = card(s.system);
    c.root.className = "card system-card " + s.action;
    c.figs.replaceChildren(
      fig("health", s.health.toFixed(1)),
      fig("risk", fmtRisk(s.max_risk)),
      fig("action", s.action),
      fig("worst", s.worst_component),
    );
  }
  setStatus(systems.length + " systems · updated " + new Date().toLocaleTimeString());
  if (cards.size > before) await refreshCharts();
}

function polyline(points, cls) {
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("class", cls);
  line.setAttribute("points", points.join(" "));
  return line;
}

async function refreshCharts() {
  for (const [system, c] of cards) {
    const hist = await api("/v1/systems/" + encodeURIComponent(system) + "/history");
    const n = Math.max(hist.length - 1, 1);
    const health = hist.map((p, i) => `${(300 * i / n).toFixed(1)},${(68 - 0.66 * p.health).toFixed(1)}`);
    const risk = hist.filter((p) => p.max_risk !== null)
      .map((p) => `${(300 * hist.indexOf(p) / n).toFixed(1)},${(68 - 66 * p.max_risk).toFixed(1)}`);
    c.svg.replaceChildren(polyline(health, "health"), polyline(risk, "risk"));
  }
}

// -- recommendations --------------------------------------------------------------------
let lastCursor = null;
const seen = new Set();

function recItem(rec) {
  const li = el("li", "rec");
  li.dataset.id = rec.recommendation_id;
  const head = el("div", "head");
  head.append(
    el("span", "action " + rec.action, rec.action),
    el("span", "", rec.system + " / " + rec.component),
    el("span", "muted", "risk " + fmtRisk(rec.risk) + " · health " + rec.health.toFixed(1)),
    el("span", "muted", rec.issued_at),
  );
  const money = el("div", "money",
    "stay: " + fmtUsd(rec.expected_loss_stay_usd) + " expected loss · switch: " +
    fmtUsd(rec.expected_cost_switch_usd) + " · outage: " + fmtUsd(rec.outage_loss_usd));
  const reasons = el("div", "reasons", "why: " + (rec.reasons || [])
    .map((r) => r.feature + (r.value === null ? "" : "=" + Number(r.value).toPrecision(3)))
    .join(", "));
  const buttons = el("div", "buttons");
  const ack = el("button", "ack", "Acknowledge");
  const fa = el("button", "false-alarm", "False alarm");
  const verdict = el("span", "verdict");
  const send = (v) => async () => {
    try {
      const row = await api("/v1/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ recommendation_id: rec.recommendation_id, system: rec.system,
                               component: rec.component, verdict: v }),
      });
      verdict.textContent = "stored: " + row.verdict + " #" + row.id;
    } catch (err) { verdict.textContent = "not stored: " + err.message; }
  };
  ack.addEventListener("click", send("acknowledged"));
  fa.addEventListener("click", send("false_alarm"));
  buttons.append(ack, fa, verdict);
  li.append(head, money, reasons, buttons);
  return li;
}

function addRec(rec) {
  if (rec.cursor) lastCursor = rec.cursor;
  if (seen.has(rec.recommendation_id)) return;
  seen.add(rec.recommendation_id);
  const feed = $("feed");
  feed.prepend(recItem(rec));
  while (feed.children.length > MAX_FEED) feed.lastChild.remove();
}

async function streamFeed() {
  // fetch, not EventSource: EventSource cannot send the Authorization header.
  for (;;) {
    try {
      const headers = { ...authHeaders(), Accept: "text/event-stream" };
      if (lastCursor) headers["Last-Event-ID"] = lastCursor;
      const res = await fetch("/v1/recommendations/stream?max_s=600", { headers });
      if (!res.ok) throw new Error(String(res.status));
      $("feedstate").textContent = "· live";
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (event === "recommendation" && data) addRec(JSON.parse(data));
          if (event === "reset") lastCursor = null;
        }
      }
    } catch (err) {
      $("feedstate").textContent = "· reconnecting (" + err.message + ")";
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// -- alerts -----------------------------------------------------------------------------
async function refreshAlerts() {
  const body = await api("/v1/alerts");
  const list = $("alerts");
  if (body.source === "none") {
    list.replaceChildren(el("li", "muted", "no alert notifier on this server"));
    return;
  }
  if (!body.alerts.length) {
    list.replaceChildren(el("li", "muted", "none firing"));
    return;
  }
  list.replaceChildren(...body.alerts.map((a) => {
    const li = el("li", "alert");
    li.append(el("span", "sev", a.severity + " "),
      el("span", "", (a.labels.alertname || "") + " · " + (a.labels.system || "")),
      el("div", "muted", a.annotations.summary || ""));
    return li;
  }));
}

// -- loop -------------------------------------------------------------------------------
function every(ms, fn) {
  const run = () => fn().catch((err) => setStatus("error: " + err.message));
  run();
  return setInterval(run, ms);
}

async function start() {
  $("key").value = sessionStorage.getItem(KEY_ITEM) || "";
  $("keyform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
    location.reload();
  });
  every(2000, refreshFleet);
  every(10000, refreshCharts);
  every(5000, refreshAlerts);
  try {
    for (const rec of await api("/v1/recommendations?limit=50")) addRec(rec);
  } catch (err) { setStatus("error: " + err.message); }
  streamFeed();
}

start();
