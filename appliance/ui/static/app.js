// The operations page: reads /admin/overview every few seconds and /admin/history for the charts.
// The API key lives in this tab's sessionStorage and travels only as a bearer header.
"use strict";

const KEY_SLOT = "kai-appliance-key";
const REFRESH_MS = 5000;
const HISTORY_MS = 15000;
const AGENT_ORDER = ["kai", "guardrail", "genetic", "wellness"];

const $ = (id) => document.getElementById(id);
let timer = null;
let historyAt = 0;
let paused = false;
let signedIn = false;

// -- DOM helpers (text only: nothing from the server is parsed as HTML) --------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

const dash = "–";
const seconds = (s) => (s === null || s === undefined ? dash : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const percent = (x) => (x === null || x === undefined ? dash : `${(x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0)} %`);
const number = (x) => (x === null || x === undefined ? dash : Number(x).toLocaleString("en"));
const badge = (text, tone) => el("span", { class: `badge ${tone}`, text });
const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });

function duration(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// -- talking to the appliance --------------------------------------------------------------------

class Refused extends Error {}

async function call(path, options = {}) {
  const key = sessionStorage.getItem(KEY_SLOT);
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  if (response.status === 401) throw new Refused("refused");
  return response;
}

async function json(path, options) {
  const response = await call(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

// -- signing in and out --------------------------------------------------------------------------

function showLogin(message) {
  signedIn = false;
  clearTimeout(timer);
  $("main").hidden = true;
  // Nothing of the last view stays in the page behind the form.
  for (const id of ["engines", "agents", "admission", "runs"]) $(id).tBodies[0].replaceChildren();
  for (const id of ["charts", "gpus", "crisis", "placement", "facts"]) $(id).replaceChildren();
  $("logout").hidden = true;
  $("pause").hidden = true;
  $("updated").textContent = "";
  setStatus("not signed in", "neutral");
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("key").value = "";
  $("key").focus();
}

function showPage(open) {
  signedIn = true;
  $("login").hidden = true;
  $("main").hidden = false;
  $("open-note").hidden = !open;
  $("logout").hidden = open;
  $("pause").hidden = false;
}

async function signIn(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_SLOT, key);
  $("key").value = "";
  historyAt = 0;
  await refresh();
}

function signOut() {
  sessionStorage.removeItem(KEY_SLOT);
  showLogin("Signed out.");
}

// -- the refresh loop ----------------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  try {
    const overview = await json("/admin/overview");
    showPage(overview.appliance.auth === "open");
    $("fetch-error").hidden = true;
    render(overview);
    if (Date.now() - historyAt > HISTORY_MS) {
      historyAt = Date.now();
      drawCharts(await json("/admin/history"), overview.agents);
    }
  } catch (error) {
    if (error instanceof Refused) {
      const hadKey = sessionStorage.getItem(KEY_SLOT) !== null;
      sessionStorage.removeItem(KEY_SLOT);
      showLogin(hadKey ? "That key was refused. Check it and try again." : "");
      return;
    }
    if (signedIn) {
      $("fetch-error").hidden = false;
      $("fetch-error").textContent = `Could not read the appliance: ${error.message}. Retrying.`;
      setStatus("unreachable", "bad");
    } else {
      showLogin(`Could not reach the appliance: ${error.message}`);
      return;
    }
  }
  if (!paused) timer = setTimeout(refresh, REFRESH_MS);
}

function setStatus(text, tone) {
  const pill = $("status");
  pill.textContent = text;
  pill.className = `pill ${tone}`;
}

// -- sections ------------------------------------------------------------------------------------

function render(o) {
  const a = o.appliance;
  const tone = { healthy: "ok", degraded: "warn", starting: "info" }[a.status] || "bad";
  setStatus(`${a.status}${a.ready ? "" : " · not ready"}`, tone);
  const simulated = o.engines.length && o.engines.every((e) => e.kind === "sim");
  $("facts").textContent = `profile ${a.profile} · version ${a.version} · up ${duration(a.uptime_s)}` +
    (simulated ? " · simulated engines: answers are synthetic" : "");
  $("agents-note").textContent = `P50 and P95 over the last ${a.latency_window_s} s of answered requests; ` +
    "tokens/s, fallback and shed shares over about the last minute.";
  $("updated").textContent = `updated ${new Date(o.generated_at * 1000).toLocaleTimeString("en-GB")}`;
  renderCards(o);
  renderEngines(o.engines);
  renderAgents(o.agents);
  renderAdmission(o.admission);
  renderGpus(o.gpus);
  renderCrisis(o.crisis);
  renderBenchmarks(o.benchmarks);
  renderPlacement(o.placement);
}

function card(id, text, tone) {
  const node = $(id);
  node.textContent = text;
  node.className = `big ${tone || ""}`;
}

function renderCards(o) {
  const up = o.engines.filter((e) => e.up).length;
  card("c-engines", `${up} / ${o.engines.length}`, up === o.engines.length ? "good" : "bad");
  const over = o.agents.filter((g) => g.verdict === "worse");
  card("c-over", over.length ? over.map((g) => g.agent).join(", ") : "none", over.length ? "bad" : "good");
  const shedShares = o.agents.map((g) => g.shed_rate).filter((x) => x !== null);
  const worst = shedShares.length ? Math.max(...shedShares) : null;
  card("c-shed", worst === null ? "no traffic" : percent(worst), worst > 0 ? "warn" : "good");
  card("c-crisis", number(o.crisis.total));
  const devices = (o.gpus.devices || []).length;
  card("c-gpus", devices ? `${devices} GPU${devices > 1 ? "s" : ""}` : "no GPU");
}

function stateBadge(engine) {
  const tone = engine.up ? "ok" : ["STARTING", "BACKOFF"].includes(engine.state) ? "warn" : "bad";
  return badge(engine.state, tone);
}

function breakerBadge(state, failures) {
  const tone = { closed: "ok", half_open: "warn", open: "bad" }[state] || "neutral";
  const label = state === "half_open" ? "half-open" : state || dash;
  return badge(failures ? `${label} (${failures} failed)` : label, tone);
}

function meter(fraction) {
  if (fraction === null || fraction === undefined) return dash;
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  return el(
    "span",
    { class: "meter" },
    el("span", { class: "bar", role: "img", "aria-label": `${pct.toFixed(0)} percent used` },
      el("span", { class: `fill${pct >= 90 ? " high" : ""}`, style: `width:${pct.toFixed(1)}%` })),
    `${pct.toFixed(0)} %`,
  );
}

function renderEngines(engines) {
  fill($("engines").tBodies[0], engines.map((e) => el("tr", { "data-engine": e.id },
    el("th", { scope: "row" }, e.id, el("div", { class: "muted small", text: e.kind })),
    el("td", { text: e.models.join(", ") }),
    el("td", {}, stateBadge(e)),
    el("td", { class: "num", text: number(e.restarts) }),
    el("td", {}, breakerBadge(e.breaker, e.breaker_failures)),
    el("td", { class: "num", text: number(e.running) }),
    el("td", { class: "num", text: number(e.queue) }),
    el("td", { class: "num", text: e.capacity === null ? dash : `${e.in_flight} / ${e.capacity}` }),
    el("td", {}, meter(e.kv_cache_usage)),
    el("td", { class: "err", text: e.last_error || "" }),
  )));
}

function verdictBadge(verdict) {
  if (!verdict) return badge("no traffic", "neutral");
  const tone = { within: "ok", better: "ok", worse: "bad" }[verdict];
  const text = { within: "within band", better: "under band", worse: "over band" }[verdict];
  return badge(text, tone);
}

function renderAgents(agents) {
  fill($("agents").tBodies[0], agents.map((g) => el("tr", { "data-agent": g.agent },
    el("th", { scope: "row", text: g.agent }),
    el("td", {}, g.model, g.fallbacks.length ? el("div", { class: "muted small", text: `then ${g.fallbacks.join(", ")}` }) : null),
    el("td", { class: "num", text: seconds(g.p50_s) }),
    el("td", { class: "num", "data-field": "p95", text: seconds(g.p95_s) }),
    el("td", { text: `${g.band_s[0]}–${g.band_s[1]} s` }),
    el("td", {}, verdictBadge(g.verdict)),
    el("td", { class: "num", title: `expected ${g.tokens_band[0]}–${g.tokens_band[1]}`, text: g.tokens_per_s === null ? dash : g.tokens_per_s.toFixed(1) }),
    el("td", { class: "num", text: percent(g.fallback_rate) }),
    el("td", { class: "num", text: `${percent(g.shed_rate)} (${g.class})` }),
    el("td", { class: "num", "data-field": "requests", text: number(g.requests) }),
  )));
}

function renderAdmission(admission) {
  $("admission-note").textContent = admission.enabled
    ? "Since the appliance started. Rerouted: sent on to a fallback model; shed: refused with 503 and Retry-After."
    : "Admission control is off: every request goes straight to its engine.";
  fill($("admission").tBodies[0], admission.classes.map((c) => el("tr", {},
    el("th", { scope: "row", text: c.class }),
    el("td", { class: "num", text: number(c.admitted) }),
    el("td", { class: "num", text: number(c.rerouted) }),
    el("td", { class: "num", text: number(c.shed) }),
    el("td", { class: "num", text: number(c.waiting) }),
  )));
}

function renderGpus(gpus) {
  const devices = gpus.devices || [];
  if (!devices.length) {
    $("gpus").replaceChildren(el("p", { class: "note", text: `No GPU on this host (NVML: ${gpus.state}). Engines here run on the simulator, on CPU or elsewhere.` }));
    return;
  }
  const rows = devices.map((d) => el("tr", {},
    el("th", { scope: "row", text: `${d.index} · ${d.name}` }),
    el("td", {}, meter(d.memory_used_mib / d.memory_total_mib), el("div", { class: "muted small", text: `${number(d.memory_used_mib)} of ${number(d.memory_total_mib)} MiB` })),
    el("td", { class: "num", text: d.utilization_percent === null ? dash : `${d.utilization_percent} %` }),
    el("td", { class: "num", text: d.temperature_c === null ? dash : `${d.temperature_c} °C` }),
  ));
  $("gpus").replaceChildren(el("table", {},
    el("thead", {}, el("tr", {}, ["GPU", "Memory", "Utilisation", "Temperature"].map((h, i) => el("th", { scope: "col", class: i > 1 ? "num" : null, text: h })))),
    el("tbody", {}, rows)));
}

function renderCrisis(crisis) {
  const entries = Object.entries(crisis.by_source);
  const label = { crisis_detector: "found by the crisis detector", guardrail: "found by the Guardrail" };
  $("crisis").replaceChildren(
    el("dt", { text: "total" }), el("dd", { "data-field": "crisis-total", text: number(crisis.total) }),
    ...entries.flatMap(([source, n]) => [el("dt", { text: label[source] || source }), el("dd", { text: number(n) })]),
  );
}

function renderBenchmarks(bench) {
  const start = $("bench-start");
  if (!bench.available) {
    $("bench-next").textContent = "Benchmarks are off in this appliance ([bench].enabled = false).";
    start.disabled = true;
    fill($("runs").tBodies[0], []);
    return;
  }
  start.disabled = bench.current_run !== null;
  const next = Object.entries(bench.next_runs)
    .filter(([, when]) => when)
    .map(([name, when]) => `${name} at ${new Date(when).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })}`);
  $("bench-next").textContent = bench.current_run !== null
    ? `Run ${bench.current_run} is in progress.`
    : next.length ? `Next scheduled: ${next.join(" · ")}` : "No run is scheduled.";
  const statusTone = { completed: "ok", running: "info", failed: "bad", interrupted: "warn", skipped: "neutral" };
  if (!bench.runs.length) {
    fill($("runs").tBodies[0], [el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No benchmark run yet." }))]);
    return;
  }
  fill($("runs").tBodies[0], bench.runs.map((r) => el("tr", { "data-run": r.id },
    el("th", { scope: "row", text: `#${r.id}` }),
    el("td", { text: r.kind }),
    el("td", { text: r.trigger }),
    el("td", {}, badge(r.status, statusTone[r.status] || "neutral"), r.reason ? el("div", { class: "muted small", text: r.reason }) : null),
    el("td", { text: new Date(r.started_at).toLocaleString("en-GB", { dateStyle: "short", timeStyle: "medium" }) }),
    el("td", {}, r.verdicts.length ? r.verdicts.map((v) => badge(
      `${v.agent} ${seconds(v.p95_s)} ${v.verdict === "worse" ? "over" : "ok"}${v.regressed ? ` · regressed +${v.change_pct}%` : ""}`,
      v.verdict === "worse" || v.regressed ? "bad" : "ok")) : el("span", { class: "muted", text: r.status === "running" ? "running…" : dash })),
    el("td", {}, r.status === "running" || r.status === "skipped" ? dash
      : el("button", { type: "button", class: "link", on: { click: () => openReport(r) } }, `Open report #${r.id}`)),
  )));
}

function renderPlacement(p) {
  if (p.error) {
    $("placement").replaceChildren(el("p", { class: "error", text: p.error }));
    return;
  }
  const parts = [];
  if (!p.engines.length) {
    parts.push(el("p", { text: `No vLLM engine in this profile: nothing is placed on GPUs (${p.not_placed.join(", ")} run without one).` }));
  } else {
    parts.push(el("table", {},
      el("thead", {}, el("tr", {}, ["Engine", "Model", "GPUs", "TP", "Memory fraction", "Max seqs", "KV tokens", "Verdict"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, p.engines.map((e) => el("tr", {},
        el("th", { scope: "row", text: e.engine }), el("td", { text: e.model }), el("td", { text: e.gpus.join(", ") }),
        el("td", { text: e.tensor_parallel_size }), el("td", { text: e.gpu_memory_utilization.toFixed(2) }),
        el("td", { text: number(e.max_num_seqs) }), el("td", { text: number(e.kv_cache_tokens) }),
        el("td", {}, badge(e.verdict, e.verdict === "fits" ? "ok" : e.verdict === "tight" ? "warn" : "bad")))))));
  }
  parts.push(el("details", {}, el("summary", { text: "The plan as `appliance plan` prints it" }), el("pre", { class: "plan", text: p.text })));
  $("placement").replaceChildren(...parts);
}

// -- the P95 charts (inline SVG) -----------------------------------------------------------------

function drawCharts(history, agents) {
  const models = Object.fromEntries(agents.map((g) => [g.agent, g.model]));
  const end = history.now;
  const start = end - history.horizon_s;
  $("charts").replaceChildren(...AGENT_ORDER.filter((a) => history.agents[a]).map((agent) => {
    const series = history.agents[agent];
    const points = series.points.filter(([, v]) => v !== null);
    const [low, high] = series.band_s;
    const top = Math.max(high * 1.4, ...points.map(([, v]) => v * 1.1));
    const W = 300, H = 120, L = 34, R = 6, T = 8, B = 18;
    const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `chart-${agent}-desc` });
    svg.append(svgEl("rect", { class: "band", x: L, width: W - L - R, y: y(high), height: y(low) - y(high) }));
    svg.append(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    for (const v of [0, high, top]) {
      const label = svgEl("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" });
      label.textContent = v >= 10 ? v.toFixed(0) : v.toFixed(1);
      svg.append(label);
    }
    for (const [t, text] of [[start, "−60 min"], [start + history.horizon_s / 2, "−30 min"], [end, "now"]]) {
      const label = svgEl("text", { x: x(t), y: H - 4, "text-anchor": t === start ? "start" : t === end ? "end" : "middle" });
      label.textContent = text;
      svg.append(label);
    }
    if (points.length > 1) {
      svg.append(svgEl("polyline", { class: "p95", points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(Math.min(v, top)).toFixed(1)}`).join(" ") }));
    }
    for (const [t, v] of points.slice(-1)) svg.append(svgEl("circle", { class: v > high ? "dot over" : "dot", cx: x(t), cy: y(Math.min(v, top)), r: 3.5 }));
    const last = points.length ? points[points.length - 1][1] : null;
    const over = points.filter(([, v]) => v > high).length;
    const desc = points.length
      ? `${agent}: ${points.length} samples in the last hour, latest P95 ${seconds(last)}, ${over} above the band of ${low} to ${high} seconds.`
      : `${agent}: no samples yet in the last hour. Expected P95 ${low} to ${high} seconds.`;
    return el("figure", { class: "chart", "data-chart": agent },
      el("figcaption", { title: models[agent] || "" }, el("span", { text: agent }), el("span", { class: "muted small", text: `band ${low}–${high} s` })),
      svg,
      el("p", { id: `chart-${agent}-desc`, class: "sr", text: desc }));
  }));
}

// -- benchmarks ----------------------------------------------------------------------------------

async function startBenchmark(event) {
  event.preventDefault();
  const kind = $("bench-kind").value;
  $("bench-start").disabled = true;
  try {
    const run = await json("/benchmarks", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ kind }),
    });
    $("bench-msg").textContent = `Started ${kind} run ${run.id}.`;
  } catch (error) {
    if (error instanceof Refused) return showLogin("That key was refused. Check it and try again.");
    $("bench-msg").textContent = `Not started: ${error.message}`;
  }
  refresh();
}

async function openReport(run) {
  const dialog = $("report");
  $("report-title").textContent = `Benchmark report · run ${run.id} (${run.kind})`;
  try {
    const response = await call(run.report, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    $("report-frame").srcdoc = await response.text();
  } catch (error) {
    if (error instanceof Refused) return showLogin("That key was refused. Check it and try again.");
    $("report-frame").srcdoc = "";
    $("bench-msg").textContent = `The report could not be read: ${error.message}`;
    return;
  }
  dialog.showModal();
  $("report-close").focus();
}

// -- start ---------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("bench-form").addEventListener("submit", startBenchmark);
  $("report-close").addEventListener("click", () => $("report").close());
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume updates" : "Pause updates";
    $("pause").setAttribute("aria-pressed", String(paused));
    if (!paused) refresh();
    else clearTimeout(timer);
  });
  start();
});

// Ask for a key first when the appliance has keys and this tab holds none: no refused request.
async function start() {
  if (!sessionStorage.getItem(KEY_SLOT)) {
    try {
      const response = await fetch("/ui/session", { cache: "no-store", credentials: "omit" });
      if ((await response.json()).key_required) return showLogin("");
    } catch (error) {
      return showLogin(`Could not reach the appliance: ${error.message}`);
    }
  }
  refresh();
}
