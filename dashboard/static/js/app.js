// The dashboard's pages. Plain ES modules, no build step; charts by uPlot (vendored, MIT).
// Routing by path: /  (patients), /notices, /p/{site}/{patient}/{live|timeline|review|trends|report}.
import { api, setCsrf, stream } from "./api.js";
import { envelopeChart, seriesChart, barsChart } from "./charts.js";

const main = document.getElementById("main");
const TYPES = ["twitch", "phasic", "tonic", "clonus", "tremor"];
const VERDICT_TEXT = { confirmed: "Confirmed", not_spasm: "Not a spasm", unsure: "Unsure" };
let me = null;
let es = null;
const live = { handlers: {}, timers: [] }; // the current view's stream handlers and timers

// ------------------------------------------------------------------------------------------ helpers

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmtTime = (iso) =>
  new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const fmtDateTime = (iso) =>
  new Date(iso).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const fmtDur = (s) => (s === null || s === undefined ? "–" : s < 10 ? `${Number(s).toFixed(1)} s` : `${Math.round(s)} s`);
const fmtX = (x) => (x === null || x === undefined ? "–" : `×${Math.round(x)}`);
const esc = (s) => encodeURIComponent(s);

function monitoringBanner(devices) {
  const inactive = devices.filter((d) => !d.monitoring);
  if (!devices.length) {
    return h("div", { class: "banner bad", "data-testid": "inactive-banner", role: "alert" },
      h("strong", {}, "MONITORING INACTIVE"), h("span", { class: "why" }, "no device has reported for this patient"));
  }
  if (inactive.length) {
    return h("div", { class: "banner bad", "data-testid": "inactive-banner", role: "alert" },
      h("strong", {}, "MONITORING INACTIVE"),
      h("span", { class: "why" },
        inactive.map((d) => `${d.device}: ${d.reason}`).join(" · "),
        " — no events shown here means no data, not no spasms."));
  }
  return h("div", { class: "banner ok", "data-testid": "monitoring-banner" },
    h("strong", {}, "Monitoring"), h("span", { class: "why" }, devices.map((d) => d.device).join(", ") + ": data arriving"));
}

function stateBadge(ok) {
  return ok
    ? h("span", { class: "badge ok", "data-testid": "state-badge" }, "MONITORING")
    : h("span", { class: "badge bad", "data-testid": "state-badge" }, "MONITORING INACTIVE");
}

function contactText(d) {
  const c = d.contact || {};
  const off = Object.entries(c).filter(([, ok]) => ok === false).map(([ch]) => ch);
  if (!Object.keys(c).length) return "–";
  return off.length ? `lost: ${off.join(", ")}` : "all good";
}

function healthItems(d) {
  const item = (label, value, bad) => h("div", { class: "item" + (bad ? " bad" : "") },
    h("div", { class: "v" }, value), h("div", { class: "l" }, label));
  const contact = contactText(d);
  return h("div", { class: "health", "data-testid": "health" },
    item("state", d.state || "unknown", !d.monitoring),
    item("battery", d.battery_pct === null || d.battery_pct === undefined ? "–" : `${d.battery_pct} %`, d.battery_pct !== null && d.battery_pct < 20),
    item("electrode contact", contact, contact.startsWith("lost")),
    item("link loss", d.loss_pct === null || d.loss_pct === undefined ? "–" : `${Number(d.loss_pct).toFixed(2)} %`, d.loss_pct > 5),
    item("reconnects", d.reconnects ?? "–", false),
    // undelivered bytes; a gateway that does not report them shows the spool's size on disk
    d.spool_pending_bytes === null || d.spool_pending_bytes === undefined
      ? item("spool on disk", d.spool_bytes === null || d.spool_bytes === undefined ? "–" : `${(d.spool_bytes / 1024).toFixed(1)} KiB`, (d.spool_oldest_age_s || 0) > 60)
      : item("spool backlog", `${(d.spool_pending_bytes / 1024).toFixed(1)} KiB`, (d.spool_oldest_age_s || 0) > 60),
    item("last data", d.last_data_age_s === null || d.last_data_age_s === undefined ? "never" : `${Math.round(d.last_data_age_s)} s ago`, !d.monitoring),
  );
}

// ------------------------------------------------------------------------------------------ patients

async function viewPatients() {
  document.title = "Patients · neurospasm";
  const data = await api("/api/patients");
  const box = h("div", { class: "patients", "data-testid": "patients" });
  const render = (list) => {
    box.replaceChildren(...list.map(patientCard));
    if (!list.length) box.append(h("p", { class: "muted" }, "No patient has reported yet. Devices appear here when their gateway publishes its status."));
  };
  let patients = data.patients;
  render(patients);
  live.handlers.device = (d) => {
    let p = patients.find((x) => x.site === d.site && x.patient === d.patient);
    if (!p) {
      p = { site: d.site, patient: d.patient, devices: [], today: { spasms: 0, by_type: {} } };
      patients = [...patients, p];
    }
    p.devices = [...p.devices.filter((x) => x.device !== d.device), d];
    p.monitoring = p.devices.every((x) => x.monitoring);
    render(patients);
  };
  live.handlers.event = (e) => {
    const p = patients.find((x) => x.site === e.site && x.patient === e.patient);
    if (p) {
      p.today.spasms += 1;
      p.today.by_type[e.type] = (p.today.by_type[e.type] || 0) + 1;
      p.last_event = e;
      render(patients);
    }
  };
  main.replaceChildren(h("h1", {}, "Patients"), box);
}

function patientCard(p) {
  const active = p.devices.length > 0 && p.devices.every((d) => d.monitoring);
  const base = `/p/${esc(p.site)}/${esc(p.patient)}`;
  const t = p.today || { spasms: 0, by_type: {} };
  return h("div", { class: "card patient" + (active ? "" : " inactive"), "data-testid": "patient-card", "data-patient": p.patient },
    h("div", { class: "phead" }, h("h2", {}, p.patient), stateBadge(active), h("span", { class: "muted" }, `site ${p.site}`)),
    active ? null : h("div", { class: "inactive-text", "data-testid": "inactive-reason" },
      p.devices.filter((d) => !d.monitoring).map((d) => `${d.device}: ${d.reason}`).join(" · ") || "no device reporting"),
    h("div", { class: "kpis" },
      h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "today-count" }, t.spasms), h("div", { class: "l" }, "spasms today")),
      ...TYPES.filter((k) => t.by_type[k]).map((k) => h("div", { class: "kpi" }, h("div", { class: "n type " + k }, t.by_type[k]), h("div", { class: "l" }, k))),
      h("div", { class: "kpi" }, h("div", { class: "n small" }, p.last_event ? fmtTime(p.last_event.onset) : "none today"), h("div", { class: "l" }, "last event"))),
    h("table", { class: "devices" },
      h("tr", {}, h("th", {}, "device"), h("th", {}, "state"), h("th", {}, "battery"), h("th", {}, "contact"), h("th", {}, "loss")),
      p.devices.map((d) => h("tr", {},
        h("td", {}, d.device), h("td", {}, d.monitoring ? "monitoring" : d.state),
        h("td", {}, d.battery_pct === null || d.battery_pct === undefined ? "–" : `${d.battery_pct} %`),
        h("td", {}, contactText(d)),
        h("td", {}, d.loss_pct === null || d.loss_pct === undefined ? "–" : `${Number(d.loss_pct).toFixed(2)} %`)))),
    h("div", { class: "links" },
      ["live", "timeline", "review", "trends", "report"].map((v) => h("a", { href: `${base}/${v}` }, v[0].toUpperCase() + v.slice(1)))));
}

// ------------------------------------------------------------------------------------------ patient shell

function patientShell(site, patient, view, devices) {
  const base = `/p/${esc(site)}/${esc(patient)}`;
  const banner = h("div", { id: "banner" }, monitoringBanner(devices));
  const tabs = h("nav", { class: "tabs" },
    ["live", "timeline", "review", "trends", "report"].map((v) =>
      h("a", { href: `${base}/${v}`, class: v === view ? "active" : "" }, v[0].toUpperCase() + v.slice(1))));
  const body = h("div", { id: "view" });
  main.replaceChildren(
    h("div", { class: "phead" }, h("h1", { "data-testid": "patient-name" }, patient), h("span", { class: "muted" }, `site ${site}`)),
    banner, tabs, body);
  const state = { devices: [...devices] };
  const onDevice = (d) => {
    if (d.site !== site || d.patient !== patient) return;
    state.devices = [...state.devices.filter((x) => x.device !== d.device), d].sort((a, b) => a.device.localeCompare(b.device));
    banner.replaceChildren(monitoringBanner(state.devices));
    if (state.onDevice) state.onDevice(d);
  };
  live.handlers.device = onDevice;
  return { body, state };
}

// ------------------------------------------------------------------------------------------ live

async function viewLive(site, patient) {
  document.title = `${patient} · Live`;
  const snap = await api(`/api/p/${esc(site)}/${esc(patient)}/live?seconds=60`);
  const { body, state } = patientShell(site, patient, "live", snap.devices.map((d) => d.summary));
  const feed = h("ul", { class: "feed", "data-testid": "live-feed" });
  const charts = {};
  const healthBoxes = {};
  const draws = []; // charts are drawn once their boxes are in the page (they size to it)
  const chartCol = h("div", {});
  for (const d of snap.devices) {
    const hb = h("div", { class: "card" }, h("h2", {}, `${d.summary.device}: device health`), healthItems(d.summary));
    healthBoxes[d.summary.device] = hb;
    const envBox = h("div", { class: "chart" });
    const accBox = h("div", { class: "chart" });
    chartCol.append(hb,
      h("div", { class: "card" }, h("h2", {}, `EMG envelope (µV), last 60 s`), envBox),
      h("div", { class: "card" }, h("h2", {}, `Accelerometer (g)`), accBox, h("p", { class: "muted", "data-testid": "activity", "data-device": d.summary.device }, "")));
    draws.push(() => { charts[d.summary.device] = envelopeChart(envBox, accBox, d.summary.channels, d.live, 60); });
  }
  if (!snap.devices.length) chartCol.append(h("p", { class: "card muted" }, "No device has reported for this patient yet."));
  state.onDevice = (d) => {
    const hb = healthBoxes[d.device];
    if (hb) hb.replaceChildren(h("h2", {}, `${d.device}: device health`), healthItems(d));
    else route(); // a device that started after the page was drawn: draw it
  };
  const itemLi = (e) => {
    if (e.kind === "gap" || e.cause) {
      return h("li", { class: "gap", "data-id": e.id }, h("span", { class: "t" }, fmtTime(e.start)),
        h("span", {}, `Gap: ${e.cause}, ${fmtDur(e.duration_s)} without data (${e.domain})`));
    }
    if (e.kind === "onset" || !e.type) {
      return h("li", { class: "onset", "data-id": e.id, "data-testid": "onset-item" }, h("span", { class: "t" }, fmtTime(e.onset)),
        h("span", { class: "type" }, "Onset"), h("span", {}, `${e.channel}: contraction started, ${fmtX(e.amplitude_uv / (e.baseline_uv || 1))}…`));
    }
    return h("li", { class: "event", "data-id": e.id, "data-testid": "event-item" }, h("span", { class: "t" }, fmtTime(e.onset)),
      h("span", { class: "type " + e.type }, e.type), h("span", {}, `${e.channel} · ${fmtDur(e.duration_s)} · ${fmtX(e.relative_amplitude)} baseline`),
      e.frequency_hz ? h("span", { class: "muted" }, `${Number(e.frequency_hz).toFixed(1)} Hz`) : null);
  };
  const seen = new Map();
  const put = (e) => {
    const old = seen.get(e.id);
    const li = itemLi(e);
    if (old) {
      if (old.dataset.testid === "event-item" && li.dataset.testid === "onset-item") return; // event first
      old.replaceWith(li);
    } else {
      feed.prepend(li);
    }
    seen.set(e.id, li);
    while (feed.children.length > 80) feed.lastChild.remove();
  };
  const recent = snap.devices.flatMap((d) => d.recent).sort((a, b) => (a.onset || a.start).localeCompare(b.onset || b.start));
  for (const e of recent) put(e);
  live.handlers.onset = (e) => e.patient === patient && e.site === site && put(e);
  live.handlers.event = (e) => {
    if (e.patient !== patient || e.site !== site) return;
    put(e);
    if (e.context) { recent.push(e); activity(); }
  };
  live.handlers.gap = (e) => {
    if (e.patient !== patient || e.site !== site) return;
    put(e);
    charts[e.device]?.addGap(Date.parse(e.start), Date.parse(e.end));
  };
  live.handlers.live = (sample, msg) => {
    const [s, p, dev] = msg.key;
    if (s === site && p === patient) charts[dev]?.push(sample);
  };
  // The live payload carries the envelope only: the accelerometer comes from the store, polled.
  if (me.features.history) {
    const poll = async () => {
      for (const dev of snap.devices.map((d) => d.summary.device)) {
        const end = new Date(), start = new Date(end.getTime() - 60e3);
        try {
          const s = await api(`/api/p/${esc(site)}/${esc(patient)}/series?device=${esc(dev)}&kind=acc&start=${start.toISOString()}&end=${end.toISOString()}&max_points=600`);
          charts[dev]?.setAcc(s);
        } catch (_) { /* the next poll tries again */ }
      }
    };
    poll();
    live.timers.push(setInterval(poll, 3000));
  }
  // The activity context: the detector's stored spans when the gateway writes them, else the
  // context the last event carried.
  const stored = {};
  const activity = () => {
    for (const d of snap.devices) {
      const dev = d.summary.device;
      const p = chartCol.querySelector(`[data-testid=activity][data-device="${dev}"]`);
      if (!p) continue;
      const span = stored[dev];
      const ctx = recent.concat().reverse().find((e) => e.context && e.device === dev)?.context;
      p.textContent = span ? `Activity now: ${span.context} (since ${fmtTime(span.start)})`
        : ctx ? `Activity context at the last event: ${ctx}` : "Activity context: not reported by this gateway yet.";
    }
  };
  activity();
  if (me.features.history) {
    const pollActivity = async () => {
      for (const d of snap.devices) {
        try {
          const a = await api(`/api/p/${esc(site)}/${esc(patient)}/activity?device=${esc(d.summary.device)}&minutes=30`);
          stored[d.summary.device] = a.activity.length ? a.activity[a.activity.length - 1] : null;
        } catch (_) { /* next time */ }
      }
      activity();
    };
    pollActivity();
    live.timers.push(setInterval(pollActivity, 10000));
  }
  body.replaceChildren(h("div", { class: "grid2" }, chartCol,
    h("div", {}, h("div", { class: "card" }, h("h2", {}, "Events as they happen"),
      h("p", { class: "muted" }, "An onset appears first (yellow) and is replaced by the complete event when it ends."), feed))));
  for (const draw of draws) draw();
}

// ------------------------------------------------------------------------------------------ timeline

function dayRange(dateStr) {
  const d = dateStr ? new Date(dateStr + "T00:00:00") : new Date();
  const start = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  const end = new Date(start.getTime() + 24 * 3600e3);
  return { start, end };
}

function isoDate(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

async function loadEvents(site, patient, start, end) {
  return api(`/api/p/${esc(site)}/${esc(patient)}/events?start=${start.toISOString()}&end=${end.toISOString()}`);
}

// Timeline and review are snapshots (a clinician may be in the middle of a review): new events are
// announced in a bar that redraws the page on click, never by redrawing under the pointer.
function newEventsBar(site, patient) {
  const bar = h("div", { class: "newbar hidden", "data-testid": "new-events", role: "status" });
  let n = 0;
  live.handlers.event = (e) => {
    if (e.site !== site || e.patient !== patient) return;
    n += 1;
    bar.replaceChildren(`${n} new event${n === 1 ? "" : "s"} since this page was drawn. `, h("button", { onclick: () => route() }, "Show"));
    bar.classList.remove("hidden");
  };
  return bar;
}

function historyWarning(data) {
  return data.history_error
    ? h("div", { class: "banner bad", role: "alert" }, h("strong", {}, "STORED HISTORY UNAVAILABLE"),
        h("span", { class: "why" }, `${data.history_error}. Only events received live since the dashboard started are shown.`))
    : null;
}

function countsBox(c) {
  return h("div", { class: "counts", "data-testid": "counts" },
    h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "count-spasms" }, c.spasms), h("div", { class: "l" }, "spasms counted")),
    h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "count-confirmed" }, c.confirmed), h("div", { class: "l" }, "confirmed")),
    h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "count-unsure" }, c.unsure), h("div", { class: "l" }, "unsure (apart)")),
    h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "count-unreviewed" }, c.unreviewed), h("div", { class: "l" }, "not yet reviewed")),
    h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "count-not-spasm" }, c.not_spasm), h("div", { class: "l" }, "not a spasm (excluded)")),
    ...TYPES.filter((t) => c.by_type[t]).map((t) => h("div", { class: "kpi" }, h("div", { class: "n type " + t }, c.by_type[t]), h("div", { class: "l" }, t))));
}

function strip(data, start, end, onPick) {
  const W = 1200, H = 150, top = 18, base = 120;
  const x = (t) => ((t - start.getTime()) / (end.getTime() - start.getTime())) * W;
  const svgNS = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => { const e = document.createElementNS(svgNS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "strip", "data-testid": "strip", preserveAspectRatio: "none" });
  // night 22:00-07:00 local
  for (let d = new Date(start.getTime() - 24 * 3600e3); d < end; d = new Date(d.getTime() + 24 * 3600e3)) {
    const n0 = new Date(d.getFullYear(), d.getMonth(), d.getDate(), 22), n1 = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1, 7);
    const a = Math.max(0, x(n0.getTime())), b = Math.min(W, x(n1.getTime()));
    if (b > a) svg.append(el("rect", { x: a, y: top, width: b - a, height: base - top, fill: "#e7e9f3" }));
  }
  for (const g of data.gaps) {
    const a = Math.max(0, x(Date.parse(g.start))), b = Math.min(W, Math.max(x(Date.parse(g.end)), a + 1));
    const r = el("rect", { x: a, y: top, width: b - a, height: base - top, fill: "#f4c7c3", opacity: "0.8", "data-testid": "gap-shade" });
    r.append(el("title", {})); r.firstChild.textContent = `gap: ${g.cause}, ${fmtDur(g.duration_s)}`;
    svg.append(r);
  }
  const span = end.getTime() - start.getTime();
  const step = [5, 10, 15, 30, 60, 180].map((m) => m * 60e3).find((st) => span / st <= 12) || 6 * 3600e3;
  const off = new Date(start).getTimezoneOffset() * 60e3; // ticks on local clock times
  for (let t = Math.ceil((start.getTime() - off) / step) * step + off; t <= end.getTime(); t += step) {
    svg.append(el("line", { x1: x(t), x2: x(t), y1: base, y2: base + 6, stroke: "#5c6675" }));
    const lab = el("text", { x: Math.min(W - 42, x(t) + 2), y: base + 22, "font-size": 14, fill: "#5c6675" });
    const d = new Date(t);
    lab.textContent = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    svg.append(lab);
  }
  svg.append(el("line", { x1: 0, x2: W, y1: base, y2: base, stroke: "#5c6675" }));
  const maxX = Math.max(10, ...data.events.map((e) => e.relative_amplitude || 0));
  const colors = { twitch: "#7b5ea7", phasic: "#24539b", tonic: "#c0392b", clonus: "#d98a00", tremor: "#2a8a8a" };
  for (const e of data.events) {
    const hgt = 10 + (base - top - 10) * Math.min(1, (e.relative_amplitude || 0) / maxX);
    const a = x(Date.parse(e.onset));
    const w = Math.max(3, x(Date.parse(e.onset) + (e.duration_s || 0) * 1000) - a);
    const verdict = e.review?.verdict;
    const r = el("rect", { x: a, y: base - hgt, width: w, height: hgt, fill: colors[e.type] || "#333", class: "ev",
      opacity: verdict === "not_spasm" ? "0.25" : "0.9", "data-id": e.id });
    const title = el("title", {}); title.textContent = `${e.type} ${fmtTime(e.onset)}, ${fmtDur(e.duration_s)}, ${fmtX(e.relative_amplitude)}`;
    r.append(title);
    r.addEventListener("click", () => onPick(e));
    svg.append(r);
  }
  return svg;
}

async function viewTimeline(site, patient) {
  document.title = `${patient} · Timeline`;
  const params = new URLSearchParams(location.search);
  const zoomH = Number(params.get("hours") || 0);
  let { start, end } = dayRange(params.get("day"));
  if (zoomH > 0) {
    end = new Date(Math.ceil(Date.now() / 60e3) * 60e3);
    start = new Date(end.getTime() - zoomH * 3600e3);
  }
  const [snap, data] = await Promise.all([api(`/api/p/${esc(site)}/${esc(patient)}/live?seconds=1`), loadEvents(site, patient, start, end)]);
  const { body } = patientShell(site, patient, "timeline", snap.devices.map((d) => d.summary));
  const detail = h("div", { class: "card", "data-testid": "event-detail" }, h("p", { class: "muted" }, "Click an event in the strip or the list to see its envelope and accelerometer before and after."));
  const pick = async (e) => {
    detail.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    const d = await api(`/api/p/${esc(site)}/${esc(patient)}/event/${esc(e.id)}?before_s=10&after_s=10`);
    const ev = d.event;
    const envBox = h("div", {}), accBox = h("div", {});
    detail.replaceChildren(
      h("h2", {}, h("span", { class: "type " + ev.type }, ev.type), ` at ${fmtTime(ev.onset)} on ${ev.channel}`),
      h("p", {}, `${fmtDur(ev.duration_s)} · peak ${ev.peak_uv ? Math.round(ev.peak_uv) : "–"} µV · ${fmtX(ev.relative_amplitude)} baseline`,
        ev.frequency_hz ? ` · ${Number(ev.frequency_hz).toFixed(1)} Hz` : "", ev.review ? ` · reviewed: ${VERDICT_TEXT[ev.review.verdict]}` : ""),
      h("h3", {}, "EMG envelope (µV), 10 s before and after"), envBox,
      h("h3", {}, "Accelerometer (g)"), accBox);
    seriesChart(envBox, d.envelope, Date.parse(ev.onset), Date.parse(ev.onset) + (ev.duration_s || 0) * 1000, "µV");
    seriesChart(accBox, d.acc, Date.parse(ev.onset), Date.parse(ev.onset) + (ev.duration_s || 0) * 1000, "g");
  };
  const byId = Object.fromEntries(data.events.map((e) => [e.id, e]));
  const table = h("table", { class: "episodes", "data-testid": "episodes" },
    h("tr", {}, h("th", {}, "start"), h("th", {}, "episode"), h("th", {}, "duration"), h("th", {}, "peak"), h("th", {}, "review")));
  for (const ep of [...data.episodes].reverse()) {
    const kids = ep.events.map((id) => byId[id]);
    const label = ep.count === 1 ? kids[0].type : `${ep.count} events: ` + Object.entries(ep.types).map(([t, n]) => `${n} ${t}`).join(", ");
    const row = h("tr", { class: "ep", "data-testid": "episode" },
      h("td", {}, fmtTime(ep.start)), h("td", { class: ep.count === 1 ? "type " + kids[0].type : "" }, label),
      h("td", {}, fmtDur(ep.duration_s)), h("td", {}, fmtX(ep.peak_x)),
      h("td", {}, ep.count === 1 && kids[0].review ? VERDICT_TEXT[kids[0].review.verdict] : ""));
    table.append(row);
    const children = kids.map((e) => {
      const tr = h("tr", { class: "child" + (ep.count === 1 ? " hidden" : " hidden"), "data-id": e.id },
        h("td", {}, fmtTime(e.onset)), h("td", {}, h("span", { class: "type " + e.type }, e.type), ` · ${e.channel}`),
        h("td", {}, fmtDur(e.duration_s)), h("td", {}, fmtX(e.relative_amplitude)),
        h("td", {}, e.review ? VERDICT_TEXT[e.review.verdict] : ""));
      tr.addEventListener("click", (ev) => { ev.stopPropagation(); pick(e); });
      table.append(tr);
      return tr;
    });
    row.addEventListener("click", () => {
      if (ep.count === 1) { pick(kids[0]); return; }
      const open = children[0].classList.contains("hidden");
      children.forEach((c) => c.classList.toggle("hidden", !open));
      row.classList.toggle("sel", open);
    });
  }
  const prev = isoDate(new Date(start.getTime() - 12 * 3600e3)), next = isoDate(new Date(start.getTime() + 36 * 3600e3));
  const base = `/p/${esc(site)}/${esc(patient)}/timeline`;
  const zoom = h("span", { class: "muted" }, "Zoom: ",
    [["whole day", base], ["last 6 h", `${base}?hours=6`], ["last hour", `${base}?hours=1`]].map(([label, href]) =>
      h("a", { href, style: "margin-right:.8rem" }, label)));
  body.replaceChildren(
    historyWarning(data) || "", newEventsBar(site, patient),
    h("div", { class: "card" },
      h("div", { class: "phead" },
        h("h2", {}, zoomH > 0 ? `Last ${zoomH === 1 ? "hour" : zoomH + " hours"}, until ${fmtTime(end.toISOString())}`
          : start.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" })),
        h("a", { href: `${base}?day=${prev}` }, "← previous day"), h("a", { href: `${base}?day=${next}` }, "next day →"), zoom),
      countsBox(data.counts),
      strip(data, start, end, pick),
      h("p", { class: "legend muted" }, TYPES.map((t) => h("span", { class: "type " + t }, t)), " · bar height: intensity (× baseline) · shaded blue: night (22–07) · shaded red: no data (gap)")),
    h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Episodes (bursts within 30 s are grouped; click to open)"), data.episodes.length ? table : h("p", { class: "muted" }, "No events on this day.")),
      detail));
}

// ------------------------------------------------------------------------------------------ review

async function viewReview(site, patient) {
  document.title = `${patient} · Review`;
  const params = new URLSearchParams(location.search);
  const { start, end } = dayRange(params.get("day"));
  const [snap, data] = await Promise.all([api(`/api/p/${esc(site)}/${esc(patient)}/live?seconds=1`), loadEvents(site, patient, start, end)]);
  const { body } = patientShell(site, patient, "review", snap.devices.map((d) => d.summary));
  const countsCard = h("div", { class: "card" }, countsBox(data.counts));
  const table = h("table", { class: "review", "data-testid": "review-table" },
    h("tr", {}, h("th", {}, "time"), h("th", {}, "event"), h("th", {}, "duration"), h("th", {}, "intensity"), h("th", {}, "review"), h("th", {}, "mark as")));
  const refreshCounts = async () => {
    const fresh = await loadEvents(site, patient, start, end);
    countsCard.replaceChildren(countsBox(fresh.counts));
  };
  for (const e of [...data.events].reverse()) {
    const note = h("input", { placeholder: "note (optional)", "aria-label": "note", value: e.review?.note || "" });
    const verdictCell = h("td", { class: "verdict " + (e.review?.verdict || ""), "data-testid": "verdict" },
      e.review ? `${VERDICT_TEXT[e.review.verdict]} (${e.review.reviewer})` : "not reviewed");
    const tr = h("tr", { class: e.review?.verdict || "", "data-id": e.id, "data-testid": "review-row" },
      h("td", {}, fmtTime(e.onset)), h("td", { class: "ev" }, h("span", { class: "type " + e.type }, e.type), ` · ${e.channel}`),
      h("td", {}, fmtDur(e.duration_s)), h("td", {}, fmtX(e.relative_amplitude)), verdictCell);
    const mark = async (verdict) => {
      const r = await api(`/api/p/${esc(site)}/${esc(patient)}/event/${esc(e.id)}/review`, { method: "POST", body: { verdict, note: note.value } });
      verdictCell.textContent = `${VERDICT_TEXT[r.review.verdict]} (${r.review.reviewer})`;
      verdictCell.className = "verdict " + verdict;
      tr.className = verdict;
      await refreshCounts();
    };
    const logRow = h("tr", { class: "hidden", "data-testid": "audit-row" }, h("td", { colspan: 6 }));
    const showLog = async () => {
      if (!logRow.classList.contains("hidden")) { logRow.classList.add("hidden"); return; }
      const d = await api(`/api/p/${esc(site)}/${esc(patient)}/event/${esc(e.id)}/audit`);
      logRow.firstChild.replaceChildren(d.audit.length
        ? h("ul", {}, d.audit.map((a) => h("li", {}, `${fmtDateTime(a.at)} · ${a.who}: `,
            a.old ? `${VERDICT_TEXT[a.old.verdict]} → ` : "", a.new ? VERDICT_TEXT[a.new.verdict] : "withdrawn",
            a.new && a.new.note ? ` (“${a.new.note}”)` : "")))
        : h("span", { class: "muted" }, "No review yet."));
      logRow.classList.remove("hidden");
    };
    tr.append(h("td", { class: "actions" },
      h("button", { onclick: () => mark("confirmed"), "data-testid": "mark-confirmed" }, "Confirmed"),
      h("button", { onclick: () => mark("not_spasm"), "data-testid": "mark-not-spasm" }, "Not a spasm"),
      h("button", { onclick: () => mark("unsure"), "data-testid": "mark-unsure" }, "Unsure"), note,
      h("button", { class: "link-dark", onclick: showLog, "data-testid": "show-audit", title: "who changed what, when" }, "log")));
    table.append(tr, logRow);
  }
  const labels = `/api/p/${esc(site)}/${esc(patient)}/labels`;
  const reviewBase = `/p/${esc(site)}/${esc(patient)}/review`;
  body.replaceChildren(historyWarning(data) || "", newEventsBar(site, patient), countsCard,
    h("div", { class: "card" },
      h("div", { class: "phead" },
        h("h2", {}, "Events of " + start.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" })),
        h("a", { href: `${reviewBase}?day=${isoDate(new Date(start.getTime() - 12 * 3600e3))}` }, "← previous day"),
        h("a", { href: `${reviewBase}?day=${isoDate(new Date(start.getTime() + 36 * 3600e3))}` }, "next day →")),
      h("p", { class: "muted" }, "Every mark is kept with who and when (audit log). \"Not a spasm\" leaves the counts; \"unsure\" is counted apart until decided."),
      data.events.length ? table : h("p", { class: "muted" }, "No events on this day."),
      h("p", {}, "Export reviewed events as labels: ", h("a", { href: `${labels}.json` }, "JSON"), " · ", h("a", { href: `${labels}.csv` }, "CSV"))));
}

// ------------------------------------------------------------------------------------------ trends

async function viewTrends(site, patient) {
  document.title = `${patient} · Trends`;
  const days = Number(new URLSearchParams(location.search).get("days") || 14);
  const snap = await api(`/api/p/${esc(site)}/${esc(patient)}/live?seconds=1`);
  const { body } = patientShell(site, patient, "trends", snap.devices.map((d) => d.summary));
  const base = `/p/${esc(site)}/${esc(patient)}/trends`;
  const pick = h("p", { class: "card" }, "Period: ", [7, 14, 30, 90].map((n) =>
    h("a", { href: `${base}?days=${n}`, style: "margin-right:1.2rem;" + (n === days ? "font-weight:800;color:var(--ink)" : "") }, `last ${n} days`)));
  let trends;
  try {
    trends = await api(`/api/p/${esc(site)}/${esc(patient)}/trends?days=${days}`);
  } catch (err) {
    body.replaceChildren(pick, h("div", { class: "card" }, h("p", { class: "error" }, `Trends unavailable: ${err.message}`)), await interventionsCard(site, patient));
    return;
  }
  const cards = [pick];
  const draws = []; // charts are drawn once their boxes are in the page (they size to it)
  const hours = (s) => (s / 3600).toFixed(1);
  const rate = (x) => (x === null || x === undefined ? "–" : x.toFixed(2));
  const table = (head, rows) => h("table", { class: "devices" }, h("tr", {}, head.map((c) => h("th", {}, c))), rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))));
  const binLabel = (edges, i, unit) => (edges[i + 1] === null ? `≥ ${edges[i]} ${unit}` : `${edges[i]}–${edges[i + 1]} ${unit}`);
  for (const t of trends.devices) {
    const daysRows = t.days || [];
    const tz = t.config?.tz || trends.tz;
    cards.push(h("div", { class: "card", "data-testid": "trend-summary" },
      h("h2", {}, `${t.device}: ${new Date(t.start).toLocaleDateString()} – ${new Date(t.end).toLocaleDateString()} (days in ${tz})`),
      h("div", { class: "kpis" },
        h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "trend-total" }, t.total), h("div", { class: "l" }, "spasms counted")),
        ...TYPES.filter((k) => t.totals[k]).map((k) => h("div", { class: "kpi" }, h("div", { class: "n type " + k }, t.totals[k]), h("div", { class: "l" }, k))),
        h("div", { class: "kpi" }, h("div", { class: "n" }, t.unsure), h("div", { class: "l" }, "unsure (apart)")),
        h("div", { class: "kpi" }, h("div", { class: "n", "data-testid": "trend-excluded" }, t.excluded), h("div", { class: "l" }, "not a spasm (excluded)")),
        h("div", { class: "kpi" }, h("div", { class: "n" }, `${hours(t.monitored_s)} h`), h("div", { class: "l" }, `monitored (${Math.round(100 * t.coverage_fraction)} % of the period)`)),
        h("div", { class: "kpi" }, h("div", { class: "n" }, `${hours(t.gap_s)} h`), h("div", { class: "l" }, "in gaps")))));
    if (daysRows.length) {
      const x = daysRows.map((d) => Date.parse(d.date + "T00:00:00"));
      const box = h("div", {}), mon = h("div", {});
      cards.push(h("div", { class: "card" }, h("h2", {}, "Spasms per day by type (dashed lines: interventions)"), box));
      cards.push(h("div", { class: "card" }, h("h2", {}, "Hours actually monitored per day"), mon,
        h("p", { class: "muted" }, "A day with few spasms and few monitored hours is a day without data, not a good day.")));
      const ivs = trends.interventions || [];
      draws.push(() => {
        barsChart(box, x, TYPES.filter((k) => t.totals[k]).map((k) => ({ label: k, values: daysRows.map((d) => d.counts[k] || 0) })), ivs);
        barsChart(mon, x, [{ label: "monitored (h)", values: daysRows.map((d) => d.monitored_s / 3600) }], ivs);
      });
    }
    const dn = t.day_night || {};
    cards.push(h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Day versus night (night 22–07)"),
        table(["", "spasms", "monitored", "per monitored hour"], ["day", "night"].map((k) => [k, dn[k]?.count ?? 0, `${hours(dn[k]?.monitored_s || 0)} h`, rate(dn[k]?.per_monitored_hour)]))),
      h("div", { class: "card" }, h("h2", {}, "Gaps by cause"),
        Object.keys(t.gaps_by_cause || {}).length
          ? table(["cause", "gaps", "time"], Object.entries(t.gaps_by_cause).map(([c, v]) => [c, v.count, `${(v.seconds / 60).toFixed(1)} min`]))
          : h("p", { class: "muted" }, "No gaps in the period."))));
    const edges = t.duration_bins_s || [];
    const used = TYPES.filter((k) => (t.durations[k] || []).some((n) => n));
    cards.push(h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Duration distribution"),
        used.length ? table(["duration", ...used], edges.slice(0, -1).map((_, i) => [binLabel(edges, i, "s"), ...used.map((k) => t.durations[k][i] || "")]).filter((r) => r.slice(1).some((v) => v)))
          : h("p", { class: "muted" }, "No counted events."),
        h("p", { class: "muted" }, "Median: " + (used.map((k) => `${k} ${t.duration_median_s[k]?.toFixed(1)} s`).join(" · ") || "–"))),
      h("div", { class: "card" }, h("h2", {}, "Clonus frequency"),
        t.clonus_frequency.some((n) => n)
          ? table(["frequency", "episodes"], (t.frequency_bins_hz || []).slice(0, -1).map((_, i) => [binLabel(t.frequency_bins_hz, i, "Hz"), t.clonus_frequency[i]]).filter((r) => r[1]))
          : h("p", { class: "muted" }, "No clonus in the period."),
        h("p", { class: "muted" }, `Median: ${t.clonus_frequency_median_hz ? t.clonus_frequency_median_hz.toFixed(1) + " Hz" : "–"}`))));
    const act = Object.entries(t.activity_s || {});
    cards.push(h("div", { class: "card" }, h("h2", {}, "Activity time"),
      act.length ? table(["activity", "time"], act.map(([k, v]) => [k, `${hours(v)} h`])) : h("p", { class: "muted" }, "No activity context recorded by this gateway.")));
  }
  if (!trends.devices.length) cards.push(h("div", { class: "card muted" }, "No stored data for this patient yet."));
  cards.push(await interventionsCard(site, patient));
  body.replaceChildren(...cards);
  for (const draw of draws) draw();
}

async function interventionsCard(site, patient) {
  const url = `/api/p/${esc(site)}/${esc(patient)}/interventions`;
  const list = h("ul", { "data-testid": "interventions" });
  const load = async () => {
    try {
      const d = await api(url);
      list.replaceChildren(...d.interventions.map((i) => h("li", {}, `${fmtDateTime(i.at)}: `, h("strong", {}, i.kind), ` ${i.text} (${i.author})`)));
    } catch (err) { list.replaceChildren(h("li", { class: "error" }, err.message)); }
  };
  await load();
  const kind = h("input", { placeholder: "e.g. baclofen dose change", required: true });
  const text = h("input", { placeholder: "details (no names)" });
  const at = h("input", { type: "date", value: isoDate(new Date()) });
  const form = h("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    await api(url, { method: "POST", body: { kind: kind.value, text: text.value, at: new Date(at.value + "T12:00:00").toISOString() } });
    kind.value = ""; text.value = ""; await load();
  } }, kind, " ", text, " ", at, " ", h("button", { type: "submit", class: "primary" }, "Add marker"));
  return h("div", { class: "card" }, h("h2", {}, "Interventions (shown on the trends)"), list, form);
}

// ------------------------------------------------------------------------------------------ report

async function viewReport(site, patient) {
  document.title = `${patient} · Report`;
  const snap = await api(`/api/p/${esc(site)}/${esc(patient)}/live?seconds=1`);
  const { body } = patientShell(site, patient, "report", snap.devices.map((d) => d.summary));
  const today = new Date();
  const from = h("input", { type: "date", value: isoDate(new Date(today.getTime() - 13 * 86400e3)), "data-testid": "report-from" });
  const to = h("input", { type: "date", value: isoDate(today), "data-testid": "report-to" });
  const devices = snap.devices.map((d) => d.summary.device);
  const device = h("select", { "aria-label": "device" }, devices.map((d) => h("option", { value: d }, d)));
  const url = (fmt) => {
    const s = new Date(from.value + "T00:00:00"), e = new Date(new Date(to.value + "T00:00:00").getTime() + 86400e3);
    const dev = device.value ? `&device=${esc(device.value)}` : "";
    return `/api/p/${esc(site)}/${esc(patient)}/report.${fmt}?start=${s.toISOString()}&end=${e.toISOString()}${dev}`;
  };
  const pdf = h("a", { href: "#", class: "button", "data-testid": "report-pdf", download: "" }, h("button", { class: "primary" }, "Download PDF"));
  const html = h("a", { href: "#", target: "_blank", "data-testid": "report-html" }, h("button", {}, "Open printable HTML"));
  const sync = () => { pdf.href = url("pdf"); html.href = url("html"); };
  from.addEventListener("change", sync); to.addEventListener("change", sync); device.addEventListener("change", sync); sync();
  body.replaceChildren(h("div", { class: "card" }, h("h2", {}, "Summary for the clinic visit"),
    h("p", {}, "Counts, trends, monitoring coverage and the method's stated limits for the chosen period."),
    devices.length > 1 ? h("label", {}, "Sensor ", device) : "",
    h("label", {}, "From ", from), h("label", {}, "To (inclusive) ", to), h("p", {}, pdf, " ", html)));
}

// ------------------------------------------------------------------------------------------ notices

async function viewNotices() {
  document.title = "Notices · neurospasm";
  const box = h("div", { "data-testid": "notices" });
  const load = async () => {
    const d = await api("/api/notices");
    const r = d.rules;
    const parts = [];
    if (r.inactive_minutes !== null) parts.push(`monitoring inactive for ${r.inactive_minutes} min`);
    if (r.tonic_longer_than_s !== null) parts.push(`a tonic spasm longer than ${r.tonic_longer_than_s} s`);
    if (r.spasms_per_hour_above !== null) parts.push(`more than ${r.spasms_per_hour_above} spasms in an hour`);
    const rules = h("p", { class: "muted" }, `A notice is raised for: ${parts.join(" · ") || "nothing (all rules off)"}.`);
    box.replaceChildren(rules, ...(d.notices.length ? d.notices.map(noticeCard) : [h("p", { class: "card muted" }, "No notices.")]));
  };
  const noticeCard = (n) => {
    const note = h("input", { placeholder: "note (optional)" });
    return h("div", { class: "card notice" + (n.acks.length ? " acked" : ""), "data-testid": "notice" },
      h("div", { class: "phead" }, h("span", { class: "rule" }, n.text), h("span", { class: "muted" }, `${n.patient}${n.device ? " · " + n.device : ""} · ${fmtDateTime(n.at || n.raised)}`)),
      n.acks.length ? h("ul", {}, n.acks.map((a) => h("li", {}, `acknowledged by ${a.by}, ${fmtDateTime(a.at)}${a.note ? ": " + a.note : ""}`))) : null,
      h("p", {}, note, " ", h("button", { onclick: async () => { await api(`/api/notices/${esc(n.id)}/ack`, { method: "POST", body: { note: note.value } }); await load(); } }, "Acknowledge")));
  };
  await load();
  live.handlers.notice = () => load();
  main.replaceChildren(h("h1", {}, "Notices"), box);
}

// ------------------------------------------------------------------------------------------ router

async function route() {
  for (const t of live.timers) clearInterval(t);
  live.timers = [];
  live.handlers = {};
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active",
    (a.dataset.nav === "patients" && (parts.length === 0 || parts[0] === "p")) || a.dataset.nav === parts[0]);
  try {
    if (parts.length === 0) return await viewPatients();
    if (parts[0] === "notices") return await viewNotices();
    if (parts[0] === "p" && parts.length === 4) {
      const [, site, patient, view] = parts;
      const views = { live: viewLive, timeline: viewTimeline, review: viewReview, trends: viewTrends, report: viewReport };
      if (views[view]) return await views[view](site, patient);
    }
    main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Back to the patients")));
  } catch (err) {
    main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error" }, err.message));
  }
}

async function boot() {
  me = await api("/api/me");
  setCsrf(me.csrf);
  document.getElementById("who").textContent = me.login_required ? `${me.user} · site ${me.site === "*" ? "all" : me.site}` : "local (loopback)";
  const logout = document.getElementById("logout");
  if (me.login_required) {
    logout.classList.remove("hidden");
    logout.addEventListener("click", async () => { await api("/api/logout", { method: "POST" }); location.href = "/login"; });
  }
  const conn = document.getElementById("conn");
  const brokerBox = document.getElementById("broker");
  const showBroker = (b) => {
    brokerBox.classList.toggle("hidden", b.connected);
    brokerBox.replaceChildren(h("strong", {}, "NOT RECEIVING FROM THE GATEWAYS"),
      h("span", { class: "why" }, `the MQTT broker ${b.broker} is unreachable (${b.error || "disconnected"}): every device's state is unknown.`));
  };
  showBroker(me.broker);
  const handlers = {};
  for (const t of ["device", "live", "onset", "event", "gap", "notice"]) handlers[t] = (d, m) => live.handlers[t] && live.handlers[t](d, m);
  handlers.broker = (b) => showBroker(b);
  const noticeCount = document.getElementById("notice-count");
  const countNotices = async () => {
    try {
      const d = await api("/api/notices");
      const open = d.notices.filter((n) => !n.acks.length).length;
      noticeCount.textContent = open; noticeCount.classList.toggle("hidden", open === 0);
    } catch (_) { /* shown on the notices page */ }
  };
  const prevNotice = handlers.notice;
  handlers.notice = (d, m) => { prevNotice(d, m); countNotices(); };
  // After a lost connection the page redraws from a fresh snapshot: what was pushed meanwhile
  // (a status change, an event) must not be missing from the view.
  let lost = false;
  es = stream(handlers, (ok) => {
    conn.classList.toggle("hidden", ok);
    if (!ok) lost = true;
    else if (lost) { lost = false; route(); }
  });
  countNotices();
  await route();
  document.body.dataset.ready = "1";
}

boot();
