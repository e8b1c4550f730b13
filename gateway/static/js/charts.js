// Thin wrappers around uPlot (global `uPlot`, vendored): one chart per element, resized with its box.

const charts = new Map(); // element id -> uPlot instance
export const COLORS = { main: "#0b5cad", export: "#b35900", net: "#146c2e", band: "#8a1010", fill: "rgba(11,92,173,0.15)" };

function height(el) {
  return el.clientWidth < 500 ? 220 : 300;
}

function mount(el, opts, data) {
  charts.get(el.id)?.destroy();
  el.textContent = "";
  const chart = new uPlot({ width: Math.max(el.clientWidth, 280), height: height(el), ...opts }, data, el);
  charts.set(el.id, chart);
  return chart;
}

/** The data arrays a chart draws ([xs, ...series]), for tests and debugging. */
export function chartData(id) {
  return charts.get(id)?.data.map((values) => Array.from(values)) ?? null;
}

/** The visible x range of a chart ({min, max}), which zoom and pan change. */
export function chartScale(id) {
  const chart = charts.get(id);
  return chart ? { min: chart.scales.x.min, max: chart.scales.x.max } : null;
}

export function destroyChart(el) {
  charts.get(el.id)?.destroy();
  charts.delete(el.id);
  el.textContent = "";
}

const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = charts.get(entry.target.id);
    const width = Math.max(Math.floor(entry.contentRect.width), 280);
    if (chart && width > 0 && width !== chart.width) chart.setSize({ width, height: height(entry.target) });
  }
});

/** A formatter of epoch seconds as local date-time in `tz` ("2023-02-01 00:00"). */
export function dateFormatter(tz, withTime = true) {
  const format = new Intl.DateTimeFormat("en-CA", {
    timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
    ...(withTime ? { hour: "2-digit", minute: "2-digit", hourCycle: "h23" } : {}),
  });
  return (seconds) => format.format(new Date(seconds * 1000)).replace(",", "");
}

export function fmt(value, digits = 4) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : Number(value).toFixed(digits);
}

/**
 * A time series of buckets: bars for few buckets, a step line for many. `xs` are the bucket starts
 * (epoch seconds) plus the last bucket's end, so that the last bucket is drawn whole.
 */
export function timeChart(el, { xs, series, tz, unit, label }) {
  const few = xs.length <= 400;
  const stamp = dateFormatter(tz);
  const bars = uPlot.paths.bars({ size: [0.85, 80], align: 1 });
  const steps = uPlot.paths.stepped({ align: 1 });
  const chart = mount(
    el,
    {
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), tz),
      cursor: { drag: { x: true, y: false, setScale: true } },
      scales: { x: { time: true } },
      axes: [
        { label: `local time (${tz})`, labelSize: 20 },
        { label: unit, labelSize: 22, size: 60, values: (u, splits) => splits.map((v) => fmt(v, v >= 10 ? 1 : 3)) },
      ],
      series: [
        { label: "bucket start", value: (u, v) => (v == null ? "—" : stamp(v)) },
        ...series.map((s) => ({
          label: s.label || label,
          stroke: s.color || COLORS.main,
          fill: few && !s.line ? (s.fill || "rgba(11,92,173,0.55)") : undefined,
          width: few && !s.line ? 1 : 2,
          paths: few && !s.line ? bars : steps,
          points: { show: false },
          value: (u, v) => (v == null ? "—" : `${fmt(v)} ${unit}`),
        })),
      ],
    },
    // A step line needs a value at the last bucket's end to draw that bucket: repeat the last value.
    [xs, ...series.map((s) => (few && !s.line ? s.values : [...s.values.slice(0, -1), s.values.at(-2) ?? null]))],
  );
  resizer.observe(el);
  return chart;
}

/** Bars over categories (hours, weekdays) with an optional low-high band drawn as whiskers. */
export function categoryChart(el, { labels, values, low, high, unit, label, color }) {
  const xs = labels.map((_, i) => i);
  const data = [xs, values];
  const series = [
    { label: "group", value: (u, v) => (v == null ? "—" : labels[v]) },
    {
      label,
      stroke: color || COLORS.main,
      fill: "rgba(11,92,173,0.55)",
      paths: uPlot.paths.bars({ size: [0.7, 40] }),
      points: { show: false },
      value: (u, v) => (v == null ? "—" : `${fmt(v)} ${unit}`),
    },
  ];
  if (low && high) {
    data.push(low, high);
    for (const name of ["p10", "p90"]) {
      series.push({ label: name, stroke: COLORS.band, width: 1, dash: [4, 3], points: { show: true, size: 4 },
        value: (u, v) => (v == null ? "—" : `${fmt(v)} ${unit}`) });
    }
  }
  const chart = mount(
    el,
    {
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: () => [-0.6, labels.length - 0.4] } },
      axes: [
        { values: (u, splits) => splits.map((v) => labels[v] ?? ""), incrs: [1, 2, 3, 6], space: 28 },
        { label: unit, labelSize: 22, size: 60, values: (u, splits) => splits.map((v) => fmt(v, 3)) },
      ],
      series,
    },
    data,
  );
  resizer.observe(el);
  return chart;
}

/** ACF or PACF stems by lag with the +-band drawn as dashed lines. */
export function lagChart(el, { lags, values, band, label, xLabel }) {
  const upper = lags.map(() => band);
  const lower = lags.map(() => -band);
  const chart = mount(
    el,
    {
      cursor: { drag: { x: true, y: false, setScale: true } },
      scales: { x: { time: false } },
      axes: [{ label: xLabel, labelSize: 20 }, { size: 50 }],
      series: [
        { label: "lag" },
        { label, stroke: COLORS.main, fill: "rgba(11,92,173,0.7)", paths: uPlot.paths.bars({ size: [0.6, 6] }),
          points: { show: false }, value: (u, v) => fmt(v, 3) },
        { label: `+band`, stroke: COLORS.band, dash: [5, 4], width: 1, points: { show: false }, value: (u, v) => fmt(v, 3) },
        { label: `−band`, stroke: COLORS.band, dash: [5, 4], width: 1, points: { show: false }, value: (u, v) => fmt(v, 3) },
      ],
    },
    [lags, values, upper, lower],
  );
  resizer.observe(el);
  return chart;
}

/** Zoom or pan the x scale of the chart in `el`; `action` is in, out, left, right or reset. */
export function zoom(el, action) {
  const chart = charts.get(el.id);
  if (!chart) return;
  const xs = chart.data[0];
  const full = [xs[0], xs[xs.length - 1]];
  const { min, max } = chart.scales.x;
  const span = max - min;
  let next;
  if (action === "in") next = [min + span / 4, max - span / 4];
  else if (action === "out") next = [min - span / 2, max + span / 2];
  else if (action === "left") next = [min - span / 4, max - span / 4];
  else if (action === "right") next = [min + span / 4, max + span / 4];
  else next = full;
  const width = Math.min(next[1] - next[0], full[1] - full[0]);
  let lo = Math.max(next[0], full[0]);
  let hi = lo + width;
  if (hi > full[1]) [lo, hi] = [full[1] - width, full[1]];
  chart.setScale("x", { min: lo, max: hi });
}

/** The 24 x 7 table: one row per ISO weekday, one cell per hour, shaded by value. */
export function heatmapTable(table, groups, unit) {
  const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const cell = new Map(groups.map((g) => [`${g.weekday}-${g.hour}`, g.mean]));
  const max = Math.max(...groups.map((g) => g.mean), 1e-12);
  table.textContent = "";
  const caption = table.createCaption();
  caption.textContent = `Mean ${unit} per quarter-hour; rows are weekdays, columns local hours`;
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  for (let hour = 0; hour < 24; hour++) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = String(hour).padStart(2, "0");
    head.appendChild(th);
  }
  const body = table.createTBody();
  days.forEach((name, index) => {
    const row = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = name;
    row.appendChild(th);
    for (let hour = 0; hour < 24; hour++) {
      const value = cell.get(`${index + 1}-${hour}`);
      const td = row.insertCell();
      const share = value === undefined ? 0 : value / max;
      td.textContent = value === undefined ? "" : fmt(value, 3);
      td.title = `${name} ${String(hour).padStart(2, "0")}:00: ${fmt(value)} ${unit}`;
      td.style.background = `rgba(11,92,173,${(0.05 + 0.95 * share).toFixed(3)})`;
      td.style.color = share > 0.5 ? "#ffffff" : "#1a1a1a";
    }
  });
}
