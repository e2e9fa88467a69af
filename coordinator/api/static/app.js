// The coordinator's page: polls the JSON API, draws what it returns, and sends the two actions.
// No framework, no assets from elsewhere: the graph's SVG is computed by the server.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { partition: null, run: null };
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

function authHeaders() {
  const token = $("#token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJSON(url) {  // reads send the token too: they need scope read unless anonymous on loopback
  const response = await fetch(url, { cache: "no-store", headers: authHeaders() });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function act(url) {
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

async function loadPartitions() {
  const { partitions } = await getJSON("/api/partitions");
  const select = $("#partition");
  const chosen = state.partition ?? partitions[0] ?? "";
  if (!changed("partitions", [partitions, chosen])) return;
  select.innerHTML = partitions.map((p) => `<option ${p === chosen ? "selected" : ""}>${esc(p)}</option>`).join("");
  state.partition = chosen || null;
}

async function loadGraph() {
  const query = state.partition ? `?partition=${encodeURIComponent(state.partition)}` : "";
  const { svg } = await getJSON(`/api/graph${query}`);
  if (!changed("graph", svg)) return;
  $("#graph").innerHTML = svg;
  document.querySelectorAll("#graph .job").forEach((node) => {
    node.addEventListener("click", () => {
      if (node.dataset.run) openRun(node.dataset.run);
    });
  });
}

async function loadRuns() {
  const { runs } = await getJSON("/api/runs?limit=30");
  if (!changed("runs", runs)) return;
  $("#runs tbody").innerHTML = runs.map((r) => `
    <tr class="run-row" data-run="${esc(r.run_id)}" data-state="${esc(r.state)}">
      <td><a data-open="${esc(r.run_id)}">${esc(r.run_id.slice(0, 12))}</a></td>
      <td>${esc(r.job)}</td><td>${esc(r.partition)}</td>
      <td class="state-${esc(r.state)}">${esc(r.state)}</td>
      <td>${r.attempt}/${r.max_attempts}</td><td>${esc((r.error || "").slice(0, 160))}</td>
    </tr>`).join("");
  document.querySelectorAll("#runs a[data-open]").forEach((a) => a.addEventListener("click", () => openRun(a.dataset.open)));
}

async function loadGrid() {
  const { partitions, rows } = await getJSON("/api/grid?last=7");
  if (!changed("grid", { partitions, rows: rows.map((r) => ({ ...r, fresh_s: ago(r.fresh_s) })) })) return;
  const head = `<tr><th>dataset</th><th>fresh</th>${partitions.map((p) => `<th>${esc(p)}</th>`).join("")}</tr>`;
  const body = rows.map((row) => {
    const cells = row.partitioned
      ? row.cells.map((c) => `<td class="cell state-${esc(c.state)}" title="${esc(c.event_id || "")}">${esc(c.state)}</td>`).join("")
      : `<td class="cell state-${esc(row.cells[0].state)}" colspan="${Math.max(partitions.length, 1)}">${esc(row.cells[0].state)}</td>`;
    return `<tr data-dataset="${esc(row.dataset)}"><td>${esc(row.dataset)}</td><td>${esc(ago(row.fresh_s))}</td>${cells}</tr>`;
  }).join("");
  $("#grid").innerHTML = head + body;
}

async function openRun(runId) {
  state.run = runId;
  history.replaceState(null, "", `/ui/runs/${encodeURIComponent(runId)}`);
  await loadRun();
}

async function loadRun() {
  if (!state.run) return;
  const r = await getJSON(`/api/runs/${encodeURIComponent(state.run)}`);
  if (!changed("run", r)) return;
  $("#detail-section").hidden = false;
  $("#detail-title").textContent = `${r.run_id} — ${r.job}[${r.partition ?? ""}]`;
  const canRetry = r.state === "failed" || r.state === "blocked";
  const cause = r.root_cause && r.root_cause.run_id !== r.run_id
    ? `<p>root cause: <a data-open="${esc(r.root_cause.run_id)}">${esc(r.root_cause.job)}[${esc(r.root_cause.partition)}]</a> ${esc(r.root_cause.state)}: ${esc(r.root_cause.error)}</p>` : "";
  $("#detail").innerHTML = `
    <p>state <b id="run-state" class="state-${esc(r.state)}">${esc(r.state)}</b>, attempt ${r.attempt}/${r.max_attempts}</p>
    ${r.error ? `<p class="error" id="run-error">${esc(r.error)}</p>` : ""}
    ${cause}
    <p>
      <button id="retry" ${canRetry ? "" : "disabled"}>Retry</button>
      <button id="rerun">Rerun ${esc(r.job)}[${esc(r.partition ?? "")}]</button>
    </p>
    <p>command: <code>${esc((r.command || []).join(" "))}</code></p>
    <table><tr><th>input</th><th>partition</th><th>event id</th><th>rows</th></tr>
      ${r.inputs.map((i) => `<tr><td>${esc(i.dataset)}</td><td>${esc(i.partition)}</td><td><code>${esc(i.event_id)}</code></td><td>${esc(i.row_count)}</td></tr>`).join("")}
    </table>
    <table><tr><th>attempt</th><th>state</th><th>error</th></tr>
      ${r.attempts.map((a) => `<tr><td>${a.attempt}</td><td class="state-${esc(a.state)}">${esc(a.state)}</td><td>${esc(a.error)}</td></tr>`).join("")}
    </table>
    <table><tr><th>output</th><th>status</th><th>event id</th></tr>
      ${r.outputs.map((o) => `<tr><td>${esc(o.dataset)}</td><td class="state-${esc(o.status)}">${esc(o.status)}</td><td><code>${esc(o.event_id)}</code></td></tr>`).join("")}
    </table>
    <table id="audit"><tr><th>when</th><th>who</th><th>action</th><th>detail</th></tr>
      ${(r.audit || []).map((a) => `<tr class="audit-row"><td>${esc(new Date(a.at * 1000).toISOString())}</td><td>${esc(a.actor)}</td><td>${esc(a.action)}</td><td>${esc(a.detail || a.run_id || "")}</td></tr>`).join("")}
    </table>
    <h3>log</h3><pre class="log" id="log">${esc(r.log || "(empty)")}</pre>`;
  $("#detail a[data-open]")?.addEventListener("click", (e) => openRun(e.target.dataset.open));
  $("#retry").addEventListener("click", () => act(`/api/runs/${encodeURIComponent(r.run_id)}/retry`)
    .then(() => { say(`run ${r.run_id} queued again`); refresh(); }).catch((e) => say(e.message, true)));
  $("#rerun").addEventListener("click", () => {
    const query = r.partition ? `?partition=${encodeURIComponent(r.partition)}` : "";
    act(`/api/jobs/${encodeURIComponent(r.job)}/rerun${query}`)
      .then((b) => { say(`queued ${b.created.length} run(s)`); refresh(); }).catch((e) => say(e.message, true));
  });
}

async function refresh() {
  try {
    await loadPartitions();
    await Promise.all([loadGraph(), loadRuns(), loadGrid(), loadRun()]);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    say(e.message, true);
  }
}

$("#partition").addEventListener("change", (e) => { state.partition = e.target.value; refresh(); });
$("#token").value = localStorage.getItem("coord-token") || "";
$("#token").addEventListener("change", () => { localStorage.setItem("coord-token", $("#token").value.trim()); refresh(); });
const match = location.pathname.match(/^\/ui\/runs\/([^/]+)/);
if (match) state.run = decodeURIComponent(match[1]);
refresh();
setInterval(refresh, 1500);
