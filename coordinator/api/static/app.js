// The coordinator's page: polls the JSON API, draws what it returns, and sends the actions
// (each asks for confirmation first). No framework, no assets from elsewhere: the graph's SVG is
// computed by the server; the page only scales it (zoom) inside a scrolling box.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { partition: null, run: null, dataset: null, offset: 0, zoom: null };
const drawn = {};  // what each part last drew: redraw only on change, so clicks and focus survive polling

function changed(part, data) {
  const text = JSON.stringify(data);
  if (drawn[part] === text) return false;
  drawn[part] = text;
  return true;
}

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function ago(seconds) {
  if (seconds == null) return "";
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

function when(ts) {  // UTC, to the second
  return ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
}

function took(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.round((seconds % 3600) / 60)).padStart(2, "0")}m`;
}

function tries(r) {  // the attempt within the budget that applied (a retry starts a new round)
  const t = r.try || { n: r.attempt, of: r.max_attempts };
  return t.n ? `${t.n} of ${t.of}` : "not launched";
}

function runState(r) {  // a superseded failure is history: dimmed, and says what replaced it
  return r.superseded_by ? "superseded" : r.state;
}

function authHeaders() {
  const token = $("#token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJSON(url) {  // reads send the token too: they need scope read unless anonymous on loopback
  const response = await fetch(url, { cache: "no-store", headers: authHeaders() });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function act(url, question) {
  if (!window.confirm(question)) throw new Error("not sent");
  localStorage.setItem("coord-token", $("#token").value.trim());
  const response = await fetch(url, { method: "POST", headers: authHeaders() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = body.detail || {};
    throw new Error(`${response.status} ${detail.reason || ""}: ${detail.detail || ""}`);
  }
  return body;
}

function say(text, isError) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function runLink(id, label) {
  return id ? `<a data-open="${esc(id)}" title="${esc(id)}">${esc(label ?? id.slice(0, 12))}</a>` : "";
}

function datasetLink(name, partition) {
  return `<a data-dataset="${esc(name)}" data-partition="${esc(partition ?? "")}">${esc(name)}</a>`;
}

function wireLinks(root) {  // run and dataset links inside a freshly drawn part
  root.querySelectorAll("a[data-open]").forEach((a) => a.addEventListener("click", () => openRun(a.dataset.open)));
  root.querySelectorAll("a[data-dataset]").forEach((a) => a.addEventListener("click", () => openDataset(a.dataset.dataset, a.dataset.partition || null)));
}

// ------------------------------------------------------------------ partitions and the graph
async function loadPartitions() {
  const { partitions } = await getJSON("/api/partitions");
  const select = $("#partition");
  const chosen = state.partition ?? partitions[0] ?? "";
  if (!changed("partitions", [partitions, chosen])) return;
  select.innerHTML = partitions.map((p) => `<option ${p === chosen ? "selected" : ""}>${esc(p)}</option>`).join("");
  state.partition = chosen || null;
}

function applyZoom() {
  const svg = $("#graph svg");
  if (!svg) return;
  const natural = Number(svg.getAttribute("width"));
  const box = $("#graph").clientWidth - 4;
  // fit the width unless zoomed by hand, but no smaller than readable: a wider graph pans instead
  const scale = state.zoom ?? Math.min(1, Math.max(box / natural, 0.6));
  svg.style.width = `${Math.round(natural * scale)}px`;
  svg.style.height = "auto";
}

async function loadGraph() {
  const query = state.partition ? `?partition=${encodeURIComponent(state.partition)}` : "";
  const { svg } = await getJSON(`/api/graph${query}`);
  if (!changed("graph", svg)) return;
  $("#graph").innerHTML = svg;
  applyZoom();
  document.querySelectorAll("#graph .job").forEach((node) => {
    node.addEventListener("click", () => {
      if (node.dataset.run) openRun(node.dataset.run);
      else openWhy(node.dataset.job, state.partition);
    });
  });
  document.querySelectorAll("#graph .dataset").forEach((node) => {
    node.addEventListener("click", () => openDataset(node.dataset.dataset, state.partition));
  });
}

function zoomBy(factor) {
  const svg = $("#graph svg");
  if (!svg) return;
  const current = svg.getBoundingClientRect().width / Number(svg.getAttribute("width"));
  state.zoom = Math.max(0.2, Math.min(4, current * factor));
  applyZoom();
}

// ------------------------------------------------------------------ timeline and runs
async function loadTimeline() {
  const { partitions, rows } = await getJSON("/api/timeline?last=14");
  if (!changed("timeline", { partitions, rows })) return;
  const head = `<tr><th>job</th>${partitions.map((p) => `<th>${esc(p)}</th>`).join("")}</tr>`;
  const cell = (c) => c.run_id
    ? `<td class="cell tl state-${esc(runState(c))}" data-run="${esc(c.run_id)}" title="${esc(`${c.state} · started ${when(c.started_at)} · ${took(c.duration_s)} · ${c.runs} run(s)`)}">
         <a data-open="${esc(c.run_id)}">${esc(runState(c))}</a><small>${esc(took(c.duration_s))}${c.runs > 1 ? ` ·${c.runs}` : ""}</small></td>`
    : `<td class="cell tl state-none"><a data-why="${esc(c.partition ?? "")}" title="why is it not running?">·</a></td>`;
  const body = rows.map((row) => {
    const cells = row.partitioned ? row.cells.map(cell).join("")
      : cell(row.cells[0]).replace("<td ", `<td colspan="${Math.max(partitions.length, 1)}" `);
    return `<tr data-job="${esc(row.job)}"><th>${esc(row.job)}</th>${cells}</tr>`;
  }).join("");
  $("#timeline").innerHTML = head + body;
  wireLinks($("#timeline"));
  $("#timeline").querySelectorAll("a[data-why]").forEach((a) => a.addEventListener("click", () =>
    openWhy(a.closest("tr").dataset.job, a.dataset.why || null).catch((e) => say(e.message, true))));
}

async function loadGantt() {  // the chosen partition's runs as bars from start to end, one a line
  if (!state.partition) return;
  const { runs } = await getJSON(`/api/runs?partition=${encodeURIComponent(state.partition)}&limit=200`);
  const started = runs.filter((r) => r.started_at).reverse();  // oldest first
  if (!changed("gantt", started)) return;
  if (!started.length) { $("#gantt").innerHTML = "<p>no run has started for this partition</p>"; $("#gantt-span").textContent = ""; return; }
  const now = Date.now() / 1000;
  const t0 = Math.min(...started.map((r) => r.started_at));
  const t1 = Math.max(...started.map((r) => r.finished_at || now));
  const span = Math.max(t1 - t0, 0.001);
  $("#gantt-span").textContent = `${when(t0)} → ${when(t1)} UTC (${took(t1 - t0)})`;
  $("#gantt").innerHTML = started.map((r) => {
    const left = ((r.started_at - t0) / span) * 100;
    const width = Math.max((((r.finished_at || now) - r.started_at) / span) * 100, 0.6);
    return `<div class="gantt-row" data-run="${esc(r.run_id)}"><span class="gantt-label">${esc(r.job)}</span>
      <span class="gantt-track"><a data-open="${esc(r.run_id)}" class="gantt-bar bar-${esc(runState(r))}" style="left:${left.toFixed(2)}%;width:${Math.min(width, 100 - left).toFixed(2)}%"
        title="${esc(`${r.job} ${r.state} · ${when(r.started_at)} · ${took(r.duration_s)}`)}"></a></span>
      <span class="gantt-took">${esc(took(r.duration_s))}</span></div>`;
  }).join("");
  wireLinks($("#gantt"));
}

function runFilters() {
  const form = new FormData($("#run-filters"));
  const params = new URLSearchParams();
  for (const [key, value] of form.entries()) {
    if (!value) continue;
    if (key === "since" || key === "until") params.set(key, String(Date.parse(`${value}Z`) / 1000));
    else params.set(key, value);
  }
  params.set("offset", String(state.offset));
  return params;
}

async function loadRuns() {
  const params = runFilters();
  const { runs, total, limit } = await getJSON(`/api/runs?${params}`);
  if (!changed("runs", [runs, total])) return;
  const last = Math.min(state.offset + runs.length, total);
  $("#runs-count").textContent = total ? `${state.offset + 1}–${last} of ${total}` : "none match";
  $("#runs-prev").disabled = state.offset === 0;
  $("#runs-next").disabled = state.offset + limit >= total;
  $("#runs tbody").innerHTML = runs.map((r) => `
    <tr class="run-row${r.superseded_by ? " superseded" : ""}" data-run="${esc(r.run_id)}" data-state="${esc(runState(r))}">
      <td>${runLink(r.run_id)}</td><td>${esc(r.job)}</td><td class="nowrap">${esc(r.partition)}</td>
      <td class="state-${esc(runState(r))}">${esc(r.state)}${r.superseded_by ? ` <small>superseded by ${runLink(r.superseded_by)}</small>` : ""}</td>
      <td>${tries(r)}</td><td class="nowrap">${esc(when(r.started_at))}</td><td>${esc(took(r.duration_s))}</td>
      <td class="wrap">${esc((r.error || "").slice(0, 160))}</td>
    </tr>`).join("");
  wireLinks($("#runs"));
}

async function loadJobs() {  // the job filter's choices, once
  if (drawn.jobs) return;
  const { jobs } = await getJSON("/api/graph");
  drawn.jobs = true;
  const select = $('#run-filters [name="job"]');
  select.innerHTML += Object.keys(jobs).sort().map((j) => `<option>${esc(j)}</option>`).join("");
}

async function loadGrid() {
  const { partitions, rows } = await getJSON("/api/grid?last=7");
  if (!changed("grid", { partitions, rows: rows.map((r) => ({ ...r, fresh_s: ago(r.fresh_s) })) })) return;
  const head = `<tr><th>dataset</th><th>fresh</th>${partitions.map((p) => `<th>${esc(p)}</th>`).join("")}</tr>`;
  const body = rows.map((row) => {
    const cells = row.partitioned
      ? row.cells.map((c) => `<td class="cell state-${esc(c.state)}" title="${esc(c.stale || c.event_id || "")}">${c.event_id ? `<a data-dataset="${esc(row.dataset)}" data-partition="${esc(c.partition)}">${esc(c.state)}</a>` : esc(c.state)}${c.stale ? " ↻" : ""}</td>`).join("")
      : `<td class="cell state-${esc(row.cells[0].state)}" colspan="${Math.max(partitions.length, 1)}">${esc(row.cells[0].state)}</td>`;
    return `<tr data-dataset="${esc(row.dataset)}"><td>${datasetLink(row.dataset)}</td><td>${esc(ago(row.fresh_s))}</td>${cells}</tr>`;
  }).join("");
  $("#grid").innerHTML = head + body;
  wireLinks($("#grid"));
}

async function loadStreams() {  // each stream job's health, from its workers' heartbeats
  const { streams } = await getJSON("/api/streams");
  $("#streams-section").hidden = !streams.length;
  if (!changed("streams", streams)) return;
  const num = (n) => (n == null ? "" : String(n));
  const up = (s) => (!s.up ? "down" : s.workers_up > 1 ? `${s.workers_up} up` : "up");
  const held = (s) => (s.workers || []).map((w) =>
    `worker ${String(w.worker).slice(0, 8)} (pid ${w.pid}): ${(w.partitions || []).join(", ") || "no partition"}, lag ${num(w.lag)}`).join("\n");
  $("#streams tbody").innerHTML = streams.map((s) => `<tr data-job="${esc(s.job)}">
    <td>${esc(s.job)}</td><td class="workers state-${s.up ? "running" : "failed"}" title="${esc(held(s))}">${esc(up(s))}</td>
    <td class="heartbeat">${esc(ago(s.heartbeat_age_s == null ? null : Math.round(s.heartbeat_age_s)))}</td>
    <td class="lag">${num(s.lag)}</td><td class="watermark">${esc(when(s.watermark))}</td>
    <td class="windows-open">${num(s.windows_open)}</td><td class="announced">${num(s.announced)}</td>
    <td class="restarts">${num(s.restarts)}</td><td class="late">${num(s.late)}</td></tr>`).join("");
}

// ------------------------------------------------------------------ one run, why, one dataset
async function openRun(runId) {
  state.run = runId;
  history.replaceState(null, "", `/ui/runs/${encodeURIComponent(runId)}`);
  await loadRun();
  $("#detail-section").scrollIntoView({ block: "start" });
}

function detailsText(details) {  // what the launcher reported: model version, Spark app id, push counts
  if (!details) return "";
  try {
    return Object.entries(JSON.parse(details)).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
  } catch (e) {
    return String(details);
  }
}

function columnsText(cols) {
  return (cols || []).map((c) => `${c.name} ${c.type}`).join(", ");
}

function inputRow(i) {
  const version = i.version ? `v${i.version} of ${i.versions}` : "";
  const newer = i.newer_event_id ? ` <span class="error">a newer version exists</span>` : "";
  const producer = i.producer_run ? `${runLink(i.producer_run.run_id, `${i.producer_run.job} run`)} <span class="state-${esc(i.producer_run.state)}">${esc(i.producer_run.state)}</span>` : esc(i.producer || "");
  return `<tr class="input" data-dataset="${esc(i.dataset)}"><td>${datasetLink(i.dataset, i.partition)}</td><td>${esc(i.partition)}</td>
    <td><code title="${esc(i.event_id)}">${esc(i.event_id.slice(0, 16))}</code> ${esc(version)}${newer}</td><td>${producer}</td>
    <td>${esc(i.row_count)}</td><td class="wrap">${esc(columnsText(i.columns))}</td>
    <td class="changed">${esc((i.changed || []).join("; "))}</td></tr>`;
}

async function loadRun() {
  if (!state.run) return;
  const r = await getJSON(`/api/runs/${encodeURIComponent(state.run)}`);
  const why = await getJSON(`/api/why?job=${encodeURIComponent(r.job)}${r.partition ? `&partition=${encodeURIComponent(r.partition)}` : ""}`);
  if (!changed("run", [r, why])) return;
  $("#detail-section").hidden = false;
  $("#detail-title").textContent = `${r.run_id} — ${r.job}[${r.partition ?? ""}]`;
  const canRetry = ["failed", "blocked", "cancelled"].includes(r.state) && !r.superseded_by;
  const canCancel = ["ready", "starting", "running"].includes(r.state);
  const cause = r.root_cause && r.root_cause.run_id !== r.run_id
    ? `<p>root cause: ${runLink(r.root_cause.run_id, `${r.root_cause.job}[${r.root_cause.partition}]`)} ${esc(r.root_cause.state)}: ${esc(r.root_cause.error)}</p>` : "";
  const superseded = r.superseded_by ? `<p class="superseded-note">superseded by the newer run ${runLink(r.superseded_by)}: look there (below: where ${esc(r.job)}[${esc(r.partition ?? "")}] is now)</p>` : "";
  const next = r.next ? `<p id="next">next: <code>${esc(r.next.command)}</code> — ${esc(r.next.why)}</p>` : "";
  const lastNow = why.run_id && why.run_id !== r.run_id ? ` (its latest run: ${runLink(why.run_id)} ${esc(why.state)})` : "";
  $("#detail").innerHTML = `
    <p>state <b id="run-state" class="state-${esc(runState(r))}">${esc(r.state)}</b>, attempt ${tries(r)}
      · created ${esc(when(r.created_at))} · started ${esc(when(r.started_at) || "-")} · took ${esc(took(r.duration_s) || "-")}
      · owner ${esc(r.owner || "-")}</p>
    ${superseded}
    ${r.error ? `<p class="${r.superseded_by ? "superseded-note" : "error"} wrap" id="run-error">${esc(r.error)}</p>` : ""}
    ${cause}${next}
    <div id="why"><b>${esc(r.job)}[${esc(r.partition ?? "")}] now</b>${lastNow}<ul>${why.reasons.map((x) => `<li class="why-${esc(x.kind)}">${esc(x.text)}</li>`).join("")}</ul></div>
    <p>
      <button id="retry" ${canRetry ? "" : "disabled"}>Retry</button>
      <button id="rerun">Rerun ${esc(r.job)}[${esc(r.partition ?? "")}]</button>
      <button id="cancel" ${canCancel ? "" : "disabled"}>Cancel</button>
    </p>
    <p class="wrap">command: ${r.command ? `<code>${esc(r.command.join(" "))}</code>` : "— (not launched)"}</p>
    <h3>inputs (the exact versions it read)</h3>
    <table id="inputs"><tr><th>input</th><th>partition</th><th>version</th><th>produced by</th><th>rows</th><th>columns</th><th>changed from the version before</th></tr>
      ${r.inputs.map(inputRow).join("")}
    </table>
    <h3>attempts${r.attempts.length ? "" : ": none"}</h3>
    <table id="attempts" ${r.attempts.length ? "" : "hidden"}><tr><th>attempt</th><th>state</th><th>started</th><th>ended</th><th>took</th><th>error</th><th>details</th></tr>
      ${r.attempts.map((a) => `<tr><td>${a.attempt}</td><td class="state-${esc(a.state)}">${esc(a.state)}</td><td>${esc(when(a.started_at))}</td><td>${esc(when(a.finished_at))}</td>
        <td>${esc(a.finished_at ? took(a.finished_at - a.started_at) : "")}</td><td class="wrap">${esc(a.error)}</td><td class="wrap details">${esc(detailsText(a.details))}</td></tr>`).join("")}
    </table>
    <h3>outputs</h3>
    <table id="outputs"><tr><th>output</th><th>status</th><th>event id</th><th>rows</th><th>read by</th></tr>
      ${r.outputs.map((o) => `<tr><td>${datasetLink(o.dataset, o.partition)}</td><td class="state-${esc(o.status)}">${esc(o.status)}</td><td><code>${esc(o.event_id)}</code></td><td>${esc(o.row_count)}</td>
        <td>${(o.consumers || []).map((c) => `${runLink(c.run_id, c.job)} <span class="state-${esc(c.state)}">${esc(c.state)}</span>`).join(", ")}</td></tr>`).join("")}
    </table>
    <h3 ${(r.audit || []).length ? "" : "hidden"}>operator actions</h3>
    <table id="audit" ${(r.audit || []).length ? "" : "hidden"}><tr><th>when</th><th>who</th><th>action</th><th>detail</th></tr>
      ${(r.audit || []).map((a) => `<tr class="audit-row"><td>${esc(new Date(a.at * 1000).toISOString())}</td><td>${esc(a.actor)}</td><td>${esc(a.action)}</td><td>${esc(a.detail || a.run_id || "")}</td></tr>`).join("")}
    </table>
    <h3>log</h3><pre class="log" id="log">${esc(r.log || "(empty)")}</pre>`;
  wireLinks($("#detail"));
  const name = `${r.job}[${r.partition ?? ""}]`;
  $("#retry").addEventListener("click", () => act(`/api/runs/${encodeURIComponent(r.run_id)}/retry`,
    `Retry run ${r.run_id.slice(0, 12)} of ${name} on the same inputs?`)
    .then(() => { say(`run ${r.run_id} queued again`); refresh(); }).catch((e) => say(e.message, true)));
  $("#cancel").addEventListener("click", () => act(`/api/runs/${encodeURIComponent(r.run_id)}/cancel`,
    `Cancel run ${r.run_id.slice(0, 12)} of ${name}? Its job is stopped; downstream waits.`)
    .then(() => { say(`run ${r.run_id} cancelled`); refresh(); }).catch((e) => say(e.message, true)));
  $("#rerun").addEventListener("click", () => {
    const query = r.partition ? `?partition=${encodeURIComponent(r.partition)}` : "";
    act(`/api/jobs/${encodeURIComponent(r.job)}/rerun${query}`, `Run ${name} again on the latest inputs?`)
      .then((b) => { say(`queued ${b.created.length} run(s)`); refresh(); }).catch((e) => say(e.message, true));
  });
}

async function openWhy(job, partition) {  // a job partition with no run: only the reasons
  const why = await getJSON(`/api/why?job=${encodeURIComponent(job)}${partition ? `&partition=${encodeURIComponent(partition)}` : ""}`);
  state.run = null;
  drawn.run = null;
  $("#detail-section").hidden = false;
  $("#detail-title").textContent = `${job}[${partition ?? ""}] — ${why.state}`;
  $("#detail").innerHTML = `<div id="why"><b>why is ${esc(job)}[${esc(partition ?? "")}] not running?</b>
    <ul>${why.reasons.map((x) => `<li class="why-${esc(x.kind)}">${esc(x.text)}${x.producer_run_id ? ` (${runLink(x.producer_run_id, "its run")})` : ""}</li>`).join("")}</ul></div>`;
  wireLinks($("#detail"));
}

async function openDataset(name, partition) {
  state.dataset = { name, partition };
  await loadDataset();
  $("#dataset-section").scrollIntoView({ block: "start" });
}

async function loadDataset() {
  if (!state.dataset) return;
  const { name, partition } = state.dataset;
  const d = await getJSON(`/api/datasets/${encodeURIComponent(name)}${partition ? `?partition=${encodeURIComponent(partition)}` : ""}`);
  if (!changed("dataset", d)) return;
  $("#dataset-section").hidden = false;
  $("#dataset-title").textContent = `${d.dataset}[${d.partition ?? ""}]`;
  const rows = d.versions.map((v) => `<tr class="version${v.latest ? " latest" : ""}" data-event="${esc(v.event_id)}">
      <td>v${v.version}${v.latest ? " (latest)" : ""}</td><td class="nowrap">${esc(when(v.produced_at))}</td>
      <td>${v.producer_run ? runLink(v.producer_run.run_id, v.producer_run.job) : esc(v.producer)}</td><td>${esc(v.row_count)}</td>
      <td class="wrap">${esc(columnsText(v.columns))}</td><td class="changed">${esc(v.changed.join("; "))}</td>
      <td>${v.consumers.map((c) => `${runLink(c.run_id, c.job)} <span class="state-${esc(c.state)}">${esc(c.state)}</span>`).join(", ")}</td></tr>`).join("");
  $("#dataset").innerHTML = `
    <p>produced by ${esc(d.producer || "outside the pipeline")} · read by ${esc(d.consumers.join(", ") || "no job")} · latest ${esc(ago(d.fresh_s))}
      · partitions: ${d.partitions.slice(0, 12).map((p) => `<a data-dataset="${esc(d.dataset)}" data-partition="${esc(p.partition ?? "")}">${esc(p.partition ?? "(none)")}</a>`).join(" ")}</p>
    <table id="versions"><tr><th>version</th><th>produced (UTC)</th><th>by</th><th>rows</th><th>columns</th><th>changed from the one before</th><th>read by</th></tr>${rows}</table>`;
  wireLinks($("#dataset"));
}

// ------------------------------------------------------------------ the loop
async function refresh() {
  try {
    await loadPartitions();
    await Promise.all([loadJobs(), loadGraph(), loadTimeline(), loadGantt(), loadRuns(), loadGrid(), loadStreams(), loadRun(), loadDataset()]);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    say(e.message, true);
  }
}

$("#partition").addEventListener("change", (e) => { state.partition = e.target.value; refresh(); });
$("#token").value = localStorage.getItem("coord-token") || "";
$("#token").addEventListener("change", () => { localStorage.setItem("coord-token", $("#token").value.trim()); refresh(); });
$("#run-filters").addEventListener("change", () => { state.offset = 0; refresh(); });
$("#runs-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - Number($('#run-filters [name="limit"]').value)); refresh(); });
$("#runs-next").addEventListener("click", () => { state.offset += Number($('#run-filters [name="limit"]').value); refresh(); });
$("#zoom-in").addEventListener("click", () => zoomBy(1.25));
$("#zoom-out").addEventListener("click", () => zoomBy(0.8));
$("#zoom-fit").addEventListener("click", () => {
  const svg = $("#graph svg");
  if (svg) state.zoom = Math.min(1, ($("#graph").clientWidth - 4) / Number(svg.getAttribute("width")));
  applyZoom();
});
(() => {  // drag the graph to pan it (a click on a node still opens it: it moves less than 4 px)
  const box = $("#graph");
  let from = null;
  box.addEventListener("mousedown", (e) => { from = { x: e.clientX, y: e.clientY, left: box.scrollLeft, top: box.scrollTop }; });
  window.addEventListener("mouseup", () => { from = null; box.classList.remove("panning"); });
  box.addEventListener("mousemove", (e) => {
    if (!from || (Math.abs(e.clientX - from.x) < 4 && Math.abs(e.clientY - from.y) < 4)) return;
    box.classList.add("panning");
    box.scrollLeft = from.left - (e.clientX - from.x);
    box.scrollTop = from.top - (e.clientY - from.y);
  });
})();
window.addEventListener("resize", applyZoom);
const match = location.pathname.match(/^\/ui\/runs\/([^/]+)/);
if (match) state.run = decodeURIComponent(match[1]);
refresh();
// Auto-refresh every 1.5 s while the box is ticked and the tab is in view; a tick while the last
// refresh is still out waits for it, so a slow server is not sent a pile of requests.
let refreshing = null;
function tick() {
  if (!$("#auto").checked || document.hidden || refreshing) return;
  refreshing = refresh().finally(() => { refreshing = null; });
}
setInterval(tick, 1500);
document.addEventListener("visibilitychange", tick);
