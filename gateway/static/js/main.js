// The dashboard: controls -> /api/v1 requests -> cards, charts and tables. No build step, no framework.
//
// Everything the page shows is also kept on `window.dashboard` (the API's JSON as received, and the
// totals computed from it), so that a test or a curious developer can compare it with the API.

import { ApiError, apiFetch, apiKey, apiUrl, download, getJson, setApiKey } from "./api.js";
import { categoryChart, chartData, chartScale, destroyChart, fmt, heatmapTable, lagChart, timeChart, zoom, COLORS } from "./charts.js";

const $ = (selector) => document.querySelector(selector);
const API = "/api/v1";
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const PARAMS = ["muid", "obis", "start", "end", "interval", "agg", "tz"];

const dashboard = (window.dashboard = { meters: [], params: {}, errors: {}, state: {}, chartData, chartScale });
const stale = new Set(); // panels to reload when they are next shown
let generation = 0; // answers to older requests are dropped

// ---------------------------------------------------------------- small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

/** "2023-02-01T00:00:00+01:00" -> "2023-02-01 00:00 +01:00": the API's local time, seconds dropped. */
function localTime(iso) {
  const match = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.exec(iso || "");
  return match ? `${match[1]} ${match[2]} ${match[3]}` : iso || "—";
}

function card(list, term, value, note) {
  list.append(el("div", {}, el("dt", {}, term), el("dd", {}, value, note ? el("small", {}, ` ${note}`) : "")));
}

function table(tableEl, headers, rows, numeric = []) {
  tableEl.textContent = "";
  const head = tableEl.createTHead().insertRow();
  headers.forEach((name, i) => head.append(el("th", { scope: "col", class: numeric.includes(i) ? "num" : "" }, name)));
  const body = tableEl.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((value, i) => {
      const td = tr.insertCell();
      if (value instanceof Node) td.append(value);
      else td.textContent = value ?? "";
      if (numeric.includes(i)) td.className = "num";
    });
  }
}

/** Loading, ready or error state of a panel: the status line says what happens, errors quote the API. */
function setState(name, state, statusEl, message = "") {
  dashboard.state[name] = state;
  statusEl.closest("section")?.setAttribute(`data-${name}-state`, state);
  statusEl.classList.toggle("error", state === "error");
  statusEl.setAttribute("role", state === "error" ? "alert" : "status");
  statusEl.textContent = "";
  if (state === "loading") statusEl.textContent = message || "Loading…";
  else if (state === "error") {
    const error = message;
    dashboard.errors[name] = { status: error.status, title: error.title, detail: error.detail };
    const missing = error.status === 404 && !error.invalidParams?.length && /not found/i.test(error.detail);
    const headline = missing ? "Not available on this gateway" : `Error ${error.status ? `HTTP ${error.status}` : ""} · ${error.title}`;
    statusEl.append(el("strong", {}, headline), missing ? `the API has no route for this view yet (${error.detail})` : error.detail);
    if (error.status === 401) statusEl.append(el("span", { class: "hint" }, " Enter an API key in the field at the top of the page."));
  } else if (message) statusEl.textContent = message;
  if (state !== "error") delete dashboard.errors[name];
}

async function load(name, statusEl, request, render) {
  const mine = generation;
  setState(name, "loading", statusEl);
  try {
    const result = await request();
    if (mine !== generation) return;
    render(result);
    setState(name, "ready", statusEl);
  } catch (error) {
    if (mine !== generation) return;
    if (!(error instanceof ApiError)) {
      console.error(error);
      error = new ApiError(0, "Dashboard error", String(error.message || error));
    }
    setState(name, "error", statusEl, error);
  }
}

function channelRange() {
  const { muid, obis, start, end, tz } = dashboard.params;
  return { obis, start, end, tz, muid };
}

// ---------------------------------------------------------------- controls

function meterLabel(meter) {
  const kinds = meter.channels.map((c) => c.direction || c.obis).join(" + ");
  return `${kinds} · ${meter.muid}`;
}

function fillMeters() {
  const select = $("#meter");
  select.textContent = "";
  for (const meter of dashboard.meters) select.append(el("option", { value: meter.muid }, meterLabel(meter)));
}

function fillChannels(muid, wanted) {
  const meter = dashboard.meters.find((m) => m.muid === muid);
  const select = $("#channel");
  select.textContent = "";
  for (const c of meter?.channels || []) {
    select.append(el("option", { value: c.obis }, `${c.obis_notation} · ${c.name} (${c.unit})`));
  }
  if (wanted && [...select.options].some((o) => o.value === wanted)) select.value = wanted;
}

/** Default range: whole local days from the first to the last reading of the meter. */
function defaultRange(meter) {
  if (!meter?.first_reading) return {};
  const next = new Date(`${meter.last_reading.slice(0, 10)}T00:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return { start: meter.first_reading.slice(0, 10), end: next.toISOString().slice(0, 10) };
}

function readForm() {
  const params = {};
  for (const name of PARAMS) params[name] = $(`#controls [name="${name}"]`).value.trim();
  return params;
}

function writeForm(params) {
  $("#meter").value = params.muid;
  fillChannels(params.muid, params.obis);
  for (const name of ["start", "end", "interval", "agg", "tz"]) if (params[name]) $(`#${name}`).value = params[name];
}

function showParams(params) {
  dashboard.params = params;
  history.replaceState(null, "", `?${new URLSearchParams(params)}`);
  generation += 1;
  for (const panel of ["profiles", "acf", "explain", "balance"]) stale.add(panel);
  loadSeries();
  const active = document.querySelector('[role="tab"][aria-selected="true"]').id.replace("tab-", "");
  if (stale.has(active)) showPanel(active);
}

// ---------------------------------------------------------------- series (overview + chart + table)

function seriesTotals(series) {
  const present = series.buckets.filter((b) => b.value !== null);
  const sum = present.reduce((total, b) => total + b.value, 0);
  const max = present.reduce((best, b) => (best === null || b.value > best.value ? b : best), null);
  const min = present.reduce((best, b) => (best === null || b.value < best.value ? b : best), null);
  return {
    buckets: series.buckets.length,
    readings: series.buckets.reduce((n, b) => n + b.count, 0),
    expected: series.buckets.reduce((n, b) => n + b.expected, 0),
    total: series.aggregation === "sum" ? sum : null,
    max: max && { value: max.value, start: max.start },
    min: min && { value: min.value, start: min.start },
  };
}

function renderSeries(series) {
  const totals = seriesTotals(series);
  dashboard.series = series;
  dashboard.totals = totals;
  const unit = series.unit;
  const cards = $("#totals");
  cards.textContent = "";
  if (totals.total !== null) card(cards, "Total in range", `${fmt(totals.total)} ${unit}`);
  card(cards, "Buckets", String(totals.buckets), series.interval === "15min" ? "quarter-hours" : `${series.interval}s`);
  card(cards, "Readings", String(totals.readings), `of ${totals.expected} expected`);
  if (totals.max) card(cards, `Largest ${series.aggregation}`, `${fmt(totals.max.value)} ${unit}`, localTime(totals.max.start));
  if (totals.min) card(cards, `Smallest ${series.aggregation}`, `${fmt(totals.min.value)} ${unit}`, localTime(totals.min.start));
  const meter = dashboard.meters.find((m) => m.muid === series.muid);
  const channel = meter?.channels.find((c) => c.obis === series.obis);
  $("#meter-info").textContent = channel
    ? `Meter ${series.muid} · ${channel.obis_notation} ${channel.name} · ${series.time_zone}`
    : `Meter ${series.muid} · ${series.obis}`;

  const xs = series.buckets.map((b) => Date.parse(b.start) / 1000);
  const values = series.buckets.map((b) => b.value);
  const chartEl = $("#series-chart");
  if (xs.length) {
    xs.push(Date.parse(series.buckets.at(-1).end) / 1000);
    values.push(null);
    timeChart(chartEl, { xs, series: [{ values, label: `${series.aggregation} per ${series.interval}` }], tz: series.time_zone, unit });
  } else destroyChart(chartEl);
  chartEl.setAttribute("aria-label", `Chart of ${series.buckets.length} ${series.interval} buckets, ${unit}; the data table below has the numbers`);
  $("#series-caption").textContent =
    `${series.aggregation} of the quarter-hour readings per ${series.interval}, in ${unit}, local time ${series.time_zone}` +
    (totals.readings < totals.expected ? ` · ${totals.expected - totals.readings} quarter-hours without reading` : "");
  table(
    $("#series-table"),
    ["start", "end", `value (${unit})`, "readings", "expected"],
    series.buckets.map((b) => [localTime(b.start), localTime(b.end), fmt(b.value), String(b.count), String(b.expected)]),
    [2, 3, 4],
  );
}

function loadSeries() {
  const p = dashboard.params;
  const path = `${API}/meters/${encodeURIComponent(p.muid)}/series`;
  const query = { obis: p.obis, start: p.start, end: p.end, interval: p.interval, agg: p.agg, tz: p.tz };
  const link = $("#csv-link");
  dashboard.csvUrl = apiUrl(path, { ...query, format: "csv" });
  link.href = dashboard.csvUrl;
  link.removeAttribute("aria-disabled");
  return load("series", $("#series-status"), () => getJson(path, query), renderSeries).then(() => {
    if (dashboard.state.series === "error") {
      link.setAttribute("aria-disabled", "true");
      $("#totals").textContent = "";
      $("#series-table").textContent = "";
      $("#series-caption").textContent = "";
      destroyChart($("#series-chart"));
      dashboard.series = null;
      dashboard.totals = null;
    }
  });
}

// ---------------------------------------------------------------- analysis panels

const PANELS = {
  profiles: () => {
    const { muid, ...range } = channelRange();
    const path = `${API}/meters/${encodeURIComponent(muid)}/profile`;
    const kinds = ["hour_of_day", "day_of_week", "hour_by_weekday"];
    for (const kind of kinds) $(`#csv-${kind}`).href = apiUrl(path, { ...range, kind, format: "csv" });
    return load(
      "profiles",
      $("#profiles-status"),
      () => Promise.all(kinds.map((kind) => getJson(path, { ...range, kind }))),
      ([hours, weekdays, matrix]) => {
        dashboard.profiles = { hour_of_day: hours, day_of_week: weekdays, hour_by_weekday: matrix };
        const byHour = [...hours.groups].sort((a, b) => a.hour - b.hour);
        categoryChart($("#hour-chart"), {
          labels: byHour.map((g) => String(g.hour).padStart(2, "0")),
          values: byHour.map((g) => g.mean), low: byHour.map((g) => g.p10), high: byHour.map((g) => g.p90),
          unit: hours.unit, label: "mean",
        });
        const byDay = [...weekdays.groups].sort((a, b) => a.weekday - b.weekday);
        categoryChart($("#weekday-chart"), {
          labels: byDay.map((g) => WEEKDAYS[g.weekday - 1]),
          values: byDay.map((g) => g.mean), low: byDay.map((g) => g.p10), high: byDay.map((g) => g.p90),
          unit: weekdays.unit, label: "mean",
        });
        heatmapTable($("#heatmap"), matrix.groups, matrix.unit);
      },
    );
  },

  acf: () => {
    const { muid, obis, start, end } = channelRange();
    const interval = dashboard.params.interval === "15min" ? "15min" : "hour";
    const path = `${API}/meters/${encodeURIComponent(muid)}/autocorrelation`;
    const query = { obis, start, end, interval, tz: dashboard.params.tz };
    $("#acf-csv").href = apiUrl(path, { ...query, format: "csv" });
    return load("acf", $("#acf-status"), () => getJson(path, query), (acf) => {
      dashboard.acf = acf;
      const step = acf.interval === "hour" ? "hours" : "quarter-hours";
      const lags = acf.lags.map((l) => l.lag);
      lagChart($("#acf-chart"), { lags, values: acf.lags.map((l) => l.acf), band: acf.confidence_band, label: "ACF", xLabel: `lag (${step})` });
      lagChart($("#pacf-chart"), { lags, values: acf.lags.map((l) => l.pacf), band: acf.confidence_band, label: "PACF", xLabel: `lag (${step})` });
      const significant = (acf.significant_lags || []).join(", ") || "none";
      $("#acf-info").textContent =
        `${acf.observations} ${step}${acf.filled ? ` (${acf.filled} missing steps interpolated)` : ""}; ` +
        `95 % band ±${fmt(acf.confidence_band, 4)} (alpha ${acf.alpha}). Named lags ${acf.named_lags.join(", ")} ` +
        `tested against ±${fmt(acf.named_lag_band, 4)}: significant ${significant}; strongest lag ${acf.strongest_lag}. ` +
        `Daily seasonal strength ${fmt(acf.seasonal_strength, 2)} (shuffled values: ${fmt(acf.seasonal_strength_noise, 2)}), ` +
        `trend strength ${fmt(acf.trend_strength, 2)}.`;
      table($("#ljung-box"), ["Ljung-Box lag", "statistic", "p-value"],
        (acf.ljung_box || []).map((r) => [String(r.lag), fmt(r.statistic, 1), r.p_value < 1e-4 ? r.p_value.toExponential(2) : fmt(r.p_value, 4)]), [0, 1, 2]);
    });
  },

  explain: () => {
    const { muid, ...range } = channelRange();
    const base = `${API}/meters/${encodeURIComponent(muid)}`;
    const explained = load("explain", $("#explain-status"), () => getJson(`${base}/explain`, range), (ex) => {
      dashboard.explanation = ex;
      $("#explain-headline").textContent = ex.headline;
      $("#explain-meta").textContent =
        `Classification: ${ex.classification.replaceAll("_", " ")} · direction by the OBIS code ${ex.obis_notation}: ` +
        `${ex.obis_direction || "unknown"}, by the shape of the data: ${ex.shape_direction || "undecided"} · ` +
        `sun at ${ex.site} · ${ex.time_zone}`;
      const list = $("#explain-findings");
      list.textContent = "";
      for (const finding of ex.findings || []) list.append(el("li", {}, finding));
      table($("#explain-evidence"), ["evidence", "value", "rule", "met", "what it supports"],
        (ex.evidence || []).map((e) => [
          e.name.replaceAll("_", " "), `${fmt(e.value)} ${e.unit || ""}`, e.rule || "—",
          e.rule ? el("span", { class: e.met ? "met" : "unmet" }, e.met ? "✓ yes" : "✗ no") : "—",
          el("span", { class: "wrap" }, e.text),
        ]), [1]);
    });
    const summarised = load("summary", $("#summary-status"), () => getJson(`${base}/summary`, range), renderSummary);
    return Promise.all([explained, summarised]);
  },

  balance: () => {
    const imp = $("#balance-import").value;
    const exp = $("#balance-export").value;
    if (!imp || !exp) {
      setState("balance", "ready", $("#balance-status"), "A balance needs one import and one export channel; the meters listed do not have both.");
      return Promise.resolve();
    }
    const [importMuid, importObis] = imp.split("|");
    const [exportMuid, exportObis] = exp.split("|");
    const { start, end, tz, interval } = dashboard.params;
    const query = {
      import_muid: importMuid, import_obis: importObis, export_muid: exportMuid, export_obis: exportObis,
      start, end, tz, interval,
    };
    $("#balance-csv").href = apiUrl(`${API}/balance`, { ...query, format: "csv" });
    return load("balance", $("#balance-status"), () => getJson(`${API}/balance`, query), renderBalance);
  },

  runs: () =>
    load("runs", $("#runs-status"), () => getJson(`${API}/ingest/runs`, { limit: 20, tz: dashboard.params.tz }), (body) => {
      dashboard.runs = body;
      table($("#runs"), ["id", "kind", "status", "started", "finished", "received", "inserted", "updated", "unchanged", "rejected", "source", "error"],
        body.runs.map((r) => [String(r.id), r.kind, r.status, localTime(r.started_at), localTime(r.finished_at),
          String(r.received), String(r.inserted), String(r.updated), String(r.unchanged), String(r.rejected), r.source, r.error]),
        [5, 6, 7, 8, 9]);
      if (!body.runs.length) setState("runs", "ready", $("#runs-status"), "No ingest runs yet.");
    }),
};

/** A figure the API renders (PNG), fetched when its <details> opens; a problem+json answer is shown. */
async function loadFigure() {
  const box = $("#figure-box");
  if (!box.open) return;
  const { muid, ...range } = channelRange();
  const kind = $("#figure-kind").value;
  const url = apiUrl(`${API}/meters/${encodeURIComponent(muid)}/plots/${kind}.png`, { ...range, width: 1200, height: 700 });
  const img = $("#figure");
  await load("figure", $("#figure-status"), async () => (await apiFetch(url, { accept: "image/png" })).blob(), (blob) => {
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.alt = `${$("#figure-kind").selectedOptions[0].textContent} of meter ${muid}, drawn by the analytics service`;
    img.hidden = false;
  });
}

function renderSummary(s) {
  dashboard.summary = s;
  const cards = $("#summary");
  cards.textContent = "";
  card(cards, "Total", `${fmt(s.total)} ${s.unit}`);
  card(cards, "Mean per quarter-hour", `${fmt(s.mean)} ${s.unit}`);
  card(cards, "Largest quarter-hour", `${fmt(s.max)} ${s.unit}`, localTime(s.max_at));
  card(cards, "Baseline (5th percentile)", `${fmt(s.baseline)} ${s.unit}`, `${fmt(100 * s.baseline_energy_share, 1)} % of the energy`);
  card(cards, "Quarter-hours at zero", `${fmt(100 * s.zero_share, 1)} %`);
  card(cards, "Readings", String(s.readings), `of ${s.expected} expected`);
  const day = (s.peak_days || [])[0];
  if (day) card(cards, "Largest local day", `${fmt(day.value)} ${s.unit}`, day.start.slice(0, 10));
}

function renderBalance(b) {
  dashboard.balance = b;
  const cards = $("#balance-totals");
  cards.textContent = "";
  card(cards, "Imported", `${fmt(b.imported_total)} ${b.unit}`);
  card(cards, "Exported", `${fmt(b.exported_total)} ${b.unit}`);
  card(cards, "Net import", `${fmt(b.net_import_total)} ${b.unit}`);
  card(cards, "Export / import", fmt(b.export_to_import_ratio, 3));
  card(cards, "Quarter-hours with export", `${fmt(100 * b.export_interval_share, 1)} %`);
  const buckets = b.buckets || [];
  const chartEl = $("#balance-chart");
  if (buckets.length) {
    const xs = buckets.map((x) => Date.parse(x.start) / 1000);
    xs.push(Date.parse(buckets.at(-1).end) / 1000);
    timeChart(chartEl, {
      xs, tz: b.time_zone, unit: b.unit,
      series: [
        { label: "net import", values: [...buckets.map((x) => x.net_import), null], color: COLORS.net, fill: "rgba(20,108,46,0.35)" },
        { label: "imported", values: [...buckets.map((x) => x.imported), null], color: COLORS.main, line: true },
        { label: "exported", values: [...buckets.map((x) => x.exported), null], color: COLORS.export, line: true },
      ],
    });
  } else destroyChart(chartEl);
  const list = $("#balance-findings");
  list.textContent = "";
  for (const finding of b.findings || []) list.append(el("li", {}, finding));
}

function fillBalanceChoices() {
  const channels = dashboard.meters.flatMap((m) => m.channels.map((c) => ({ ...c, muid: m.muid })));
  for (const [id, direction] of [["#balance-import", "import"], ["#balance-export", "export"]]) {
    const select = $(id);
    select.textContent = "";
    for (const c of channels.filter((x) => x.direction === direction)) {
      select.append(el("option", { value: `${c.muid}|${c.obis}` }, `${c.obis_notation} · ${c.muid}`));
    }
    select.disabled = !select.options.length;
  }
}

// ---------------------------------------------------------------- tabs (WAI-ARIA tabs pattern)

function showPanel(name) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !selected;
  }
  if (name === "runs" || stale.has(name)) {
    stale.delete(name);
    PANELS[name]?.();
    if (name === "explain") loadFigure();
  }
}

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => showPanel(tab.id.replace("tab-", "")));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
      next.focus();
      showPanel(next.id.replace("tab-", ""));
    });
  });
}

function setupZoom() {
  const chartEl = $("#series-chart");
  for (const button of document.querySelectorAll("[data-zoom]")) {
    button.addEventListener("click", () => zoom(chartEl, button.dataset.zoom));
  }
  const keys = { "+": "in", "=": "in", "-": "out", ArrowLeft: "left", ArrowRight: "right", 0: "reset" };
  chartEl.addEventListener("keydown", (event) => {
    if (!(event.key in keys)) return;
    event.preventDefault();
    zoom(chartEl, keys[event.key]);
  });
}

// ---------------------------------------------------------------- the API key

/** A key handed over in the address (`#key=...`, as `make run` prints it) is stored, then removed from the
 * address so that it is neither shared with a link nor kept in the history. */
function takeKeyFromAddress() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has("key")) return;
  setApiKey(fragment.get("key").trim());
  history.replaceState(null, "", location.pathname + location.search);
}

function setupKey() {
  const input = $("#api-key");
  const note = $("#api-key-state");
  note.textContent = apiKey() ? "key stored in this browser" : "no key yet";
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    input.value = "";
    location.reload();
  });
  $("#key-forget").addEventListener("click", () => {
    setApiKey("");
    location.reload();
  });
}

/** CSV links download with the key: the link keeps its URL (open it in a tool of your own), the click fetches. */
function setupDownloads() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest?.("a[download]");
    if (!link || !link.getAttribute("href")?.startsWith(API)) return;
    event.preventDefault();
    if (link.getAttribute("aria-disabled") === "true") return;
    download(link.getAttribute("href")).catch((error) => {
      const status = link.closest("section")?.querySelector(".status") || $("#series-status");
      status.classList.add("error");
      status.setAttribute("role", "alert");
      status.textContent = `Download failed: ${error.detail || error.message}`;
    });
  });
}

// ---------------------------------------------------------------- start

async function start() {
  takeKeyFromAddress();
  setupKey();
  setupTabs();
  setupZoom();
  setupDownloads();
  const status = $("#series-status");
  setState("series", "loading", status, "Loading the meters…");
  let body;
  try {
    body = await getJson(`${API}/meters`, { limit: 1000 });
  } catch (error) {
    setState("series", "error", status, error);
    return;
  }
  dashboard.meters = body.meters;
  if (!body.meters.length) {
    setState("series", "ready", status, "No meters yet: run an ingest (make run does) and reload.");
    return;
  }
  fillMeters();
  fillBalanceChoices();
  const fromUrl = Object.fromEntries(new URLSearchParams(location.search));
  const meter = body.meters.find((m) => m.muid === fromUrl.muid) || body.meters[0];
  const params = {
    muid: meter.muid, obis: meter.channels[0]?.obis || "", interval: "day", agg: "sum", tz: body.time_zone,
    ...defaultRange(meter),
    ...Object.fromEntries(PARAMS.filter((n) => fromUrl[n]).map((n) => [n, fromUrl[n]])),
  };
  writeForm(params);

  $("#meter").addEventListener("change", (event) => {
    const chosen = dashboard.meters.find((m) => m.muid === event.target.value);
    fillChannels(chosen.muid);
    showParams(readForm());
  });
  for (const id of ["#channel", "#interval", "#agg"]) $(id).addEventListener("change", () => showParams(readForm()));
  $("#controls").addEventListener("submit", (event) => {
    event.preventDefault();
    showParams(readForm());
  });
  $("#balance-form").addEventListener("submit", (event) => {
    event.preventDefault();
    PANELS.balance();
  });
  $("#runs-refresh").addEventListener("click", () => PANELS.runs());
  $("#figure-box").addEventListener("toggle", loadFigure);
  $("#figure-kind").addEventListener("change", loadFigure);
  showParams(readForm());
}

start();
