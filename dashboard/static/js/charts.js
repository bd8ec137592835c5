// Charts with uPlot (vendored from npm, MIT): the rolling live envelope, history windows, daily bars.
import uPlot from "/static/vendor/uplot/uPlot.esm.js";

const PALETTE = ["#24539b", "#c0392b", "#1f7a3d", "#d98a00", "#7b5ea7", "#2a8a8a", "#6b4f2a", "#555"];
const HOLE_S = 1.5; // no live sample for this long: draw a hole, not a line across missing data

function width(el) {
  return Math.max(320, (el.clientWidth || el.parentElement?.clientWidth || 800) - 8);
}

// The live charts' time axis: one "HH:MM:SS" per tick, at least 70 px apart. uPlot's default adds
// a second row with the date and the minute, whose labels overlap where a minute starts near the
// left edge of a 60-s window.
const LIVE_TIME_AXIS = {
  space: 70,
  values: (u, splits) => splits.map((v) => new Date(v * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })),
};

// Shade [t0, t1] spans (seconds) in a light colour under the series: gaps, the event itself.
function shadePlugin(getSpans, fill) {
  return {
    hooks: {
      drawClear: [
        (u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = fill;
          for (const [a, b] of getSpans()) {
            const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
            if (x1 < u.bbox.left || x0 > u.bbox.left + u.bbox.width) continue;
            const l = Math.max(x0, u.bbox.left), r = Math.min(x1, u.bbox.left + u.bbox.width);
            ctx.fillRect(l, u.bbox.top, Math.max(2, r - l), u.bbox.height);
          }
          ctx.restore();
        },
      ],
    },
  };
}

// The live view: envelope per channel (and accelerometer when the live payload carries it),
// the last `windowS` seconds, fed sample by sample from the event stream.
export function envelopeChart(envBox, accBox, channels, initial, windowS) {
  const names = channels && channels.length ? [...channels] : [];
  for (const s of initial) for (const k of Object.keys(s.envelope_uv)) if (!names.includes(k)) names.push(k);
  const t = [], cols = names.map(() => []);
  const accT = [], acc = [[], [], []];
  const gaps = [];
  let lastT = null;
  const add = (s) => {
    const ts = s.t_ms / 1000;
    if (lastT !== null && ts - lastT > HOLE_S) {
      t.push((ts + lastT) / 2);
      cols.forEach((c) => c.push(null));
      gaps.push([lastT, ts]);
    }
    lastT = ts;
    t.push(ts);
    names.forEach((n, i) => cols[i].push(s.envelope_uv[n] ?? null));
    if (s.acc_g) {
      accT.push(ts);
      ["x", "y", "z"].forEach((k, i) => acc[i].push(s.acc_g[k] ?? null));
    }
  };
  for (const s of initial) add(s);
  const env = new uPlot(
    {
      width: width(envBox), height: 260,
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length], width: 1.6, spanGaps: false }))],
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(20, hi * 1.1)] } },
      axes: [LIVE_TIME_AXIS, { label: "µV", size: 60 }],
      plugins: [shadePlugin(() => gaps, "rgba(179,38,30,0.15)")],
      legend: { live: false },
    },
    [t, ...cols], envBox);
  let accPlot = null;
  const accPlotFor = () => {
    if (accPlot || !accBox) return accPlot;
    accPlot = new uPlot(
      {
        width: width(accBox), height: 170,
        series: [{}, ...["x", "y", "z"].map((k, i) => ({ label: k, stroke: PALETTE[i + 3], width: 1.4 }))],
        scales: { x: { time: true } },
        axes: [LIVE_TIME_AXIS, { label: "g", size: 60 }],
        plugins: [shadePlugin(() => gaps, "rgba(179,38,30,0.15)")],
        legend: { live: false },
      },
      [accT, ...acc], accBox);
    return accPlot;
  };
  if (accBox) accBox.textContent = "";
  let pending = false;
  const redraw = () => {
    pending = false;
    const now = t.length ? t[t.length - 1] : Date.now() / 1000;
    while (t.length && t[0] < now - windowS) { t.shift(); cols.forEach((c) => c.shift()); }
    while (accT.length && accT[0] < now - windowS) { accT.shift(); acc.forEach((c) => c.shift()); }
    while (gaps.length && gaps[0][1] < now - windowS) gaps.shift();
    env.setData([t, ...cols], false);
    env.setScale("x", { min: now - windowS, max: now });
    if (accT.length) {
      const p = accPlotFor();
      p.setData([accT, ...acc], false);
      p.setScale("x", { min: now - windowS, max: now });
    }
  };
  redraw();
  return {
    push(s) {
      add(s);
      if (!pending) { pending = true; requestAnimationFrame(redraw); }
    },
    addGap(a, b) { gaps.push([a / 1000, b / 1000]); },
    setAcc(series) {
      // accelerometer from the store (history series) when the live payload has none
      if (!series || !series.channels) return;
      const ch = series.channels;
      const keys = ["x", "y", "z"].filter((k) => ch[k]);
      if (!keys.length) return;
      accT.length = 0; acc.forEach((c) => (c.length = 0));
      ch[keys[0]].t_ms.forEach((ms, j) => {
        accT.push(ms / 1000);
        ["x", "y", "z"].forEach((k, i) => acc[i].push(ch[k] ? ch[k].mean[j] : null));
      });
      if (!pending) { pending = true; requestAnimationFrame(redraw); }
    },
  };
}

// A stored window (HistoryStore.series JSON): mean per channel, the event shaded.
export function seriesChart(box, series, evStartMs, evEndMs, unit) {
  if (!series || !series.channels || !Object.keys(series.channels).length) {
    box.textContent = "No stored samples for this window.";
    box.className = "muted";
    return null;
  }
  const names = Object.keys(series.channels).sort();
  // one shared time axis (bucket starts), channels aligned on it
  const ts = [...new Set(names.flatMap((n) => series.channels[n].t_ms))].sort((a, b) => a - b);
  const idx = new Map(ts.map((v, i) => [v, i]));
  const cols = names.map((n) => {
    const c = new Array(ts.length).fill(null);
    const ch = series.channels[n];
    ch.t_ms.forEach((v, j) => (c[idx.get(v)] = ch.mean[j]));
    return c;
  });
  return new uPlot(
    {
      width: width(box), height: 200,
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length], width: 1.4 }))],
      scales: { x: { time: true } },
      axes: [{}, { label: unit, size: 60 }],
      plugins: [shadePlugin(() => [[evStartMs / 1000, evEndMs / 1000]], "rgba(217,138,0,0.18)")],
      legend: { live: false },
    },
    [ts.map((v) => v / 1000), ...cols], box);
}

// Daily bars: one bar group per day (values side by side), intervention markers as vertical lines.
export function barsChart(box, dayStartsMs, groups, interventions) {
  const t = dayStartsMs.map((v) => v / 1000 + 43200);
  const n = groups.length;
  const bars = uPlot.paths.bars({ size: [0.8 / Math.max(1, n), 80], gap: 1 });
  const markers = {
    hooks: {
      draw: [
        (u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#1d2430"; ctx.setLineDash([5, 4]); ctx.lineWidth = 2;
          ctx.font = "13px sans-serif"; ctx.fillStyle = "#1d2430";
          for (const iv of interventions) {
            const x = u.valToPos(Date.parse(iv.at) / 1000, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
            ctx.fillText(iv.kind, x + 4, u.bbox.top + 14);
          }
          ctx.restore();
        },
      ],
    },
  };
  return new uPlot(
    {
      width: width(box), height: 240,
      series: [{}, ...groups.map((g, i) => ({ label: g.label, fill: PALETTE[i % PALETTE.length], stroke: PALETTE[i % PALETTE.length], paths: bars }))],
      scales: { x: { time: true, range: (u, lo, hi) => [lo - 43200, hi + 43200] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.15)] } },
      axes: [{}, { size: 50 }],
      plugins: [markers],
      legend: { live: false },
    },
    [t, ...groups.map((g) => g.values)], box);
}
