// distilq's page: runs a job with the key typed in (kept in localStorage), shows its outputs as a table with
// score bars, and keeps the key's recent jobs, running batches and a chart of its activity up to date.
"use strict";

const KEY_STORAGE = "distilq.apiKey";
const REFRESH_MS = 2000;
const CHART_POINTS = 150; // five minutes of samples, one every REFRESH_MS

const $ = (id) => document.getElementById(id);
const samples = [];

function key() {
  return $("key").value.trim();
}

async function api(method, path, body, headers = {}) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${key()}`, ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    const detail = (error.details || []).map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ");
    throw new Error(`${response.status} ${error.message || response.statusText}${detail ? ` — ${detail}` : ""}`);
  }
  return data;
}

function cell(row, value, className) {
  const td = row.insertCell();
  td.textContent = value === null || value === undefined ? "—" : String(value);
  if (className) td.className = className;
  return td;
}

function scoreCell(row, score) {
  const td = row.insertCell();
  td.className = "num";
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = `${Math.max(1, Math.round(score * 120))}px`;
  bar.setAttribute("aria-hidden", "true");
  td.append(bar, document.createTextNode(score.toFixed(4)));
}

function table(columns, caption) {
  const element = document.createElement("table");
  element.createCaption().textContent = caption;
  const head = element.createTHead().insertRow();
  for (const name of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    head.append(th);
  }
  return element;
}

function showResults(job) {
  const results = $("results");
  results.replaceChildren();
  if (job.status !== "succeeded") {
    const p = document.createElement("p");
    p.className = job.status === "failed" ? "error" : "";
    p.textContent = job.error ? `${job.status}: ${job.error.message}` : `job ${job.id} is ${job.status}`;
    results.append(p);
    return;
  }
  if (job.task === "fill-mask") {
    job.output.forEach((predictions, index) => {
      const masks = Array.isArray(predictions[0]) ? predictions : [predictions];
      masks.forEach((mask, m) => {
        const t = table(["token", "score", "sequence"], `Input ${index + 1}${masks.length > 1 ? `, mask ${m + 1}` : ""}`);
        const body = t.createTBody();
        for (const p of mask) {
          const row = body.insertRow();
          cell(row, p.token_str);
          scoreCell(row, p.score);
          cell(row, p.sequence);
        }
        results.append(t);
      });
    });
  } else {
    job.output.forEach((answers, index) => {
      const t = table(["answer", "score", "start", "end"], `Pair ${index + 1}`);
      const body = t.createTBody();
      for (const a of Array.isArray(answers) ? answers : [answers]) {
        const row = body.insertRow();
        cell(row, a.answer);
        scoreCell(row, a.score);
        cell(row, a.start, "num");
        cell(row, a.end, "num");
      }
      results.append(t);
    });
  }
}

async function run(event) {
  event.preventDefault();
  if (!key()) {
    $("status").textContent = "Enter your API key first.";
    $("key").focus();
    return;
  }
  const task = $("task").value;
  const topK = parseInt($("top-k").value, 10);
  const parameters = Number.isFinite(topK) ? { top_k: topK } : {};
  const inputs = task === "fill-mask"
    ? { input_string: $("text").value.split("\n").map((s) => s.trim()).filter(Boolean) }
    : { question: [$("question").value], context: [$("context").value] };
  $("run").disabled = true;
  $("status").textContent = "Running…";
  try {
    let job = await api("POST", `/v1/${task}`, { inputs, parameters }, { Prefer: "wait=30" });
    while (!["succeeded", "failed", "canceled"].includes(job.status)) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await api("GET", `/v1/jobs/${job.id}`);
    }
    const ms = (value) => (value === null || value === undefined ? "—" : Math.round(value));
    $("status").textContent = `Job ${job.id}: ${job.status} (queued ${ms(job.metrics.queue_ms)} ms, ` +
      `inference ${ms(job.metrics.inference_ms)} ms)`;
    showResults(job);
    refresh();
  } catch (error) {
    $("status").textContent = error.message;
    $("results").replaceChildren();
  } finally {
    $("run").disabled = false;
  }
}

function showTask() {
  const qa = $("task").value === "question-answering";
  $("text-field").hidden = qa;
  $("question-field").hidden = !qa;
  $("context-field").hidden = !qa;
  if ($("top-k").dataset.touched !== "yes") $("top-k").value = qa ? 1 : 5;
}

function showJobs(jobs) {
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    cell(row, job.id.slice(0, 8));
    cell(row, job.task);
    cell(row, job.status);
    cell(row, new Date(job.created_at).toLocaleTimeString());
    cell(row, job.metrics.queue_ms === null ? null : Math.round(job.metrics.queue_ms), "num");
    cell(row, job.metrics.inference_ms === null ? null : Math.round(job.metrics.inference_ms), "num");
  }
}

function showBatches(batches) {
  const running = batches.filter((b) => ["validating", "in_progress", "finalizing", "cancelling"].includes(b.status));
  const holder = $("batches");
  holder.replaceChildren();
  if (!running.length) {
    holder.append(Object.assign(document.createElement("p"), { textContent: "None." }));
    return;
  }
  for (const batch of running) {
    const counts = batch.request_counts;
    const label = document.createElement("label");
    label.textContent = `${batch.id} · ${batch.status} · ${counts.completed + counts.failed}/${counts.total} `;
    const bar = document.createElement("progress");
    bar.max = counts.total || 1;
    bar.value = counts.completed + counts.failed;
    label.append(bar);
    const p = document.createElement("p");
    p.append(label);
    holder.append(p);
  }
}

function drawChart() {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const top = Math.max(1, ...samples.map((s) => Math.max(s.finished_per_s, s.queued)));
  const x = (i) => (i / (CHART_POINTS - 1)) * canvas.width;
  const y = (v) => canvas.height - 4 - (v / top) * (canvas.height - 20);
  for (const [field, colour] of [["queued", "#0969da"], ["finished_per_s", "#2da44e"]]) {
    g.strokeStyle = colour;
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((s, i) => {
      const at = CHART_POINTS - samples.length + i;
      if (i === 0) g.moveTo(x(at), y(s[field])); else g.lineTo(x(at), y(s[field]));
    });
    g.stroke();
  }
  g.fillStyle = "#57606a";
  g.fillText(`max ${top.toFixed(1)}`, 4, 12);
}

async function refresh() {
  if (!key()) return;
  try {
    const [jobs, batches, stats] = await Promise.all([
      api("GET", "/v1/jobs?limit=10"), api("GET", "/v1/batches?limit=20"), api("GET", "/v1/stats"),
    ]);
    showJobs(jobs.data);
    showBatches(batches.data);
    samples.push(stats);
    if (samples.length > CHART_POINTS) samples.shift();
    $("now-stats").textContent = `— now: ${stats.finished_per_s.toFixed(1)}/s finished, ${stats.queued} queued, ` +
      `${stats.running} running`;
    drawChart();
  } catch (error) {
    $("now-stats").textContent = `— ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, key());
    refresh();
  });
  $("task").addEventListener("change", showTask);
  $("top-k").addEventListener("input", () => { $("top-k").dataset.touched = "yes"; });
  $("try").addEventListener("submit", run);
  showTask();
  refresh();
  setInterval(refresh, REFRESH_MS);
});
