// A training run as it happens: status, progress, per-epoch charts and the structured log, for
// a detector training job (v1) and a custom STT model (v3). Polls while the run is live.

import { api } from "./api.js";
import { epochCharts } from "./chart.js";
import { errorBox, fmtDate, fmtNum, fmtTime, h, link, status } from "./dom.js";

const POLL_MS = 2000;
export const STT_STATUS = { 1: "not trained", 2: "queued", 3: "training", 4: "trained", 5: "failed" };

function progressBar(percent) {
  return h("div", { class: "progress", "data-testid": "progress" },
    h("div", { class: "bar", style: { width: `${Math.max(0, Math.min(100, percent))}%` } }), h("span", {}, `${Math.round(percent)}%`));
}

function logTable(entries) {
  return h("table", { class: "list log", "data-list": "log" },
    h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Level"), h("th", {}, "Message"))),
    h("tbody", {}, entries.map((e) => h("tr", { class: `level-${e.level}` },
      h("td", { class: "mono" }, new Date(e.timestamp).toLocaleTimeString()), h("td", {}, e.level), h("td", {}, e.message)))));
}

function metricsTable(metrics) {
  const rows = Object.entries(metrics || {}).filter(([, v]) => typeof v === "number");
  return rows.length ? h("table", { class: "list metrics", "data-list": "metrics" },
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { "data-metric": k }, fmtNum(v, 4))))))
    : h("p", { class: "muted" }, "No metrics yet.");
}

async function allPages(fetchPage) {
  const items = [];
  for (let page = 1; ; page++) {
    const { entries, total } = await fetchPage(page);
    items.push(...entries);
    if (!entries.length || items.length >= total) return items;
  }
}

/** Redraw with ``draw`` every POLL_MS while ``live()`` holds; stops when the view is left. */
function poll(ctx, draw, live) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try { await draw(); } catch { /* the next tick tries again */ }
    if (!stopped && live()) timer = setTimeout(tick, POLL_MS);
  };
  ctx.onLeave(() => { stopped = true; clearTimeout(timer); });
  return tick();
}

export async function renderTrainingJob(view, jobId, ctx) {
  let job;
  const body = h("div");
  view.replaceChildren(h("p", { class: "crumbs" }, link("/ui/training-jobs", "Training jobs"), ` / job ${jobId.slice(0, 8)}`), body);
  const draw = async () => {
    job = await api(`/api/v1/training-jobs/${jobId}`);
    const entries = await allPages((page) => api(`/api/v1/training-jobs/${jobId}/logs`, { params: { page, page_size: 100 } })
      .then((d) => ({ entries: d.items, total: d.total })));
    body.replaceChildren(
      h("h1", {}, `Training job ${jobId.slice(0, 8)}`),
      h("p", {}, status(job.status), ` · dataset `, link(`/ui/datasets/${job.dataset_id}`, job.dataset_id.slice(0, 8)),
        ` · epoch ${job.current_epoch}/${job.config.epochs ?? "?"} · created ${fmtDate(job.created_at)}`,
        job.model_id ? [" · model ", h("span", { class: "mono", "data-testid": "model-id" }, job.model_id)] : ""),
      progressBar(job.progress),
      job.error_message ? errorBox(new Error(job.error_message)) : "",
      h("h2", {}, "Per epoch"), epochCharts(entries.map((e) => e.message), job.config.epochs),
      h("h2", {}, "Metrics"), metricsTable(job.metrics),
      h("h2", {}, `Log (${entries.length})`), logTable(entries));
  };
  await poll(ctx, draw, () => ["queued", "running"].includes(job?.status));
  if (window.fathomTest) window.fathomTest.ready = true;
}

export async function renderCustomModel(view, modelId, ctx) {
  let model;
  const body = h("div");
  view.replaceChildren(h("p", { class: "crumbs" }, link("/ui/custom-models", "Custom STT models"), ` / ${modelId}`), body);
  const draw = async () => {
    model = await api(`/api/v3/custom_models/${modelId}`);
    const [entries, pairs] = await Promise.all([
      allPages((page) => api(`/api/v3/custom_models/${modelId}/log`, { params: { page, per_page: 100 } })
        .then((d) => ({ entries: d.log_entries, total: d.total_entries }))),
      allPages((page) => api(`/api/v3/custom_models/${modelId}/data`, { params: { page, per_page: 100 } })
        .then((d) => ({ entries: d.result, total: d.total_results }))),
    ]);
    const seconds = (type) => pairs.filter((p) => p.type === type).reduce((s, p) => s + p.duration_seconds, 0);
    body.replaceChildren(
      h("h1", {}, model.name),
      h("p", {}, status(`${model.training_status} ${STT_STATUS[model.training_status] || ""}`.trim()),
        ` · key `, h("span", { class: "mono", "data-testid": "model-key" }, model.key), ` · base ${model.base_model} · ${model.language}`,
        ` · `, link(`/ui/transcribe?model=${encodeURIComponent(model.key)}`, "Transcribe with it")),
      model.training_progress !== null && model.training_progress !== undefined ? progressBar(model.training_progress) : "",
      model.status_message ? h("p", { class: "muted" }, model.status_message) : "",
      model.error ? errorBox(new Error(model.error)) : "",
      h("h2", {}, "Metrics"), metricsTable(model.training_metrics),
      h("h2", {}, "Per epoch"), epochCharts(entries.map((e) => e.message), 0),
      h("h2", {}, `Training data: ${pairs.length} pairs, ${fmtTime(seconds("train") * 1000)} train, ${fmtTime(seconds("test") * 1000)} test`),
      h("table", { class: "list", "data-list": "data" },
        h("thead", {}, h("tr", {}, ["Id", "Type", "Audio", "Transcript", "Duration", "Added"].map((t) => h("th", {}, t)))),
        h("tbody", {}, pairs.map((p) => h("tr", {}, h("td", {}, p.id), h("td", {}, p.type), h("td", {}, p.filename),
          h("td", {}, p.transcript_filename), h("td", {}, fmtTime(p.duration_seconds * 1000)), h("td", {}, fmtDate(p.created_at)))))),
      h("h2", {}, `Log (${entries.length})`), logTable(entries));
  };
  await poll(ctx, draw, () => [2, 3].includes(model?.training_status));
  if (window.fathomTest) window.fathomTest.ready = true;
}
