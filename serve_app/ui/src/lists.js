// The list views: each resource paginated and filtered as its API is, the query kept in the URL.

import { api } from "./api.js";
import { errorBox, fmtDate, fmtNum, h, link, status } from "./dom.js";

const V1_PAGE = (page, size) => ({ page, page_size: size });
const V3_PAGE = (page, size) => ({ page, per_page: size });
const v1Rows = (data) => ({ items: data.items, total: data.total });
const v3Rows = (data) => ({ items: data.result, total: data.total_results });

const STT_STATUS = { 1: "not trained", 2: "queued", 3: "training", 4: "trained", 5: "failed" };

export const LISTS = {
  datasets: {
    title: "Datasets", path: "/api/v1/datasets", paging: V1_PAGE, rows: v1Rows,
    filters: [{ name: "q", label: "Name contains" }],
    columns: [
      ["Name", (d) => link(`/ui/datasets/${d.id}`, d.name)],
      ["Artifact types", (d) => d.artifact_types.map((t) => t.name).join(", ")],
      ["Created", (d) => fmtDate(d.created_at)],
    ],
  },
  "inference-jobs": {
    title: "Inference jobs", path: "/api/v1/inference-jobs", paging: V1_PAGE, rows: v1Rows,
    filters: [
      { name: "status", label: "Status", options: ["pending", "processing", "completed", "failed", "cancelled"] },
      { name: "model_id", label: "Model id" },
    ],
    columns: [
      ["Job", (j) => link(`/ui/inference-jobs/${j.id}`, j.id.slice(0, 8))],
      ["Model", (j) => j.model_version || j.model_reference || j.model_id.slice(0, 8)],
      ["Status", (j) => status(j.status)],
      ["Files", (j) => `${j.processed_files}/${j.total_files}` + (j.failed_files ? ` (${j.failed_files} failed)` : "")],
      ["Detections", (j) => j.total_detections],
      ["Created", (j) => fmtDate(j.created_at)],
    ],
  },
  "training-jobs": {
    title: "Training jobs", path: "/api/v1/training-jobs", paging: V1_PAGE, rows: v1Rows,
    filters: [
      { name: "status", label: "Status", options: ["queued", "running", "completed", "failed", "cancelled"] },
      { name: "dataset_id", label: "Dataset id" },
    ],
    columns: [
      ["Job", (j) => link(`/ui/training-jobs/${j.id}`, j.id.slice(0, 8))],
      ["Dataset", (j) => link(`/ui/datasets/${j.dataset_id}`, j.dataset_id.slice(0, 8))],
      ["Status", (j) => status(j.status)],
      ["Progress", (j) => `${Math.round(j.progress * 100)}% · epoch ${j.current_epoch}`],
      ["Created", (j) => fmtDate(j.created_at)],
    ],
  },
  models: {
    title: "Registered models", path: "/api/v1/registry/models", paging: V1_PAGE, rows: v1Rows,
    filters: [{ name: "kind", label: "Kind", options: ["detector", "stt"] }],
    columns: [
      ["Name", (m) => link(`/ui/models/${encodeURIComponent(m.name)}`, m.name)],
      ["Kind", (m) => m.kind],
      ["Latest version", (m) => m.latest_version],
      ["Aliases", (m) => Object.entries(m.aliases || {}).map(([a, v]) => `${a} → ${v}`).join(", ") || "–"],
      ["Created", (m) => fmtDate(m.created_at)],
    ],
  },
  "custom-models": {
    title: "Custom STT models", path: "/api/v3/custom_models", paging: V3_PAGE, rows: v3Rows,
    filters: [
      { name: "q", label: "Name contains" },
      { name: "training_status", label: "Status", options: Object.keys(STT_STATUS), labels: STT_STATUS },
      { name: "base_model", label: "Base", options: ["general", "medical", "legal", "technical"] },
    ],
    columns: [
      ["Name", (m) => link(`/ui/custom-models/${m.id}`, m.name)],
      ["Key", (m) => m.key],
      ["Base", (m) => m.base_model],
      ["Status", (m) => status(`${m.training_status} ${STT_STATUS[m.training_status] || ""}`.trim())],
      ["WER", (m) => fmtNum(m.training_metrics?.wer)],
      ["Created", (m) => fmtDate(m.created_at)],
    ],
  },
  evaluations: {
    title: "Evaluations", path: "/api/v1/evaluations", paging: V1_PAGE, rows: v1Rows,
    filters: [],
    columns: [
      ["Evaluation", (e) => link(`/ui/evaluations/${e.id}`, e.id.slice(0, 8))],
      ["Kind", (e) => e.kind],
      ["Models", (e) => e.models.map((m) => m.reference || m.name || m).join(" vs ")],
      ["Status", (e) => status(e.status)],
      ["Files", (e) => e.total_files],
      ["Created", (e) => fmtDate(e.created_at)],
    ],
  },
};

export const PAGE_SIZE = 20;

/** Draw one list into ``view``; the filters and page live in the URL's query string. */
export async function renderList(view, name, navigate) {
  const spec = LISTS[name];
  const params = new URLSearchParams(location.search);
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const filters = Object.fromEntries(spec.filters.map((f) => [f.name, params.get(f.name) || ""]));

  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value) q.set(el.name, el.value);
    navigate(`${location.pathname}?${q}`);
  } },
  spec.filters.map((f) => h("label", {}, f.label, " ",
    f.options
      ? h("select", { name: f.name, onchange: () => form.requestSubmit() },
          h("option", { value: "" }, "any"),
          f.options.map((o) => h("option", { value: o, selected: filters[f.name] === String(o) }, f.labels?.[o] || o)))
      : h("input", { name: f.name, value: filters[f.name] }))),
  spec.filters.length ? h("button", { type: "submit" }, "Filter") : null);

  const table = h("table", { class: "list", "data-list": name });
  view.replaceChildren(h("h1", {}, spec.title), form, table);
  let data;
  try {
    data = spec.rows(await api(spec.path, { params: { ...filters, ...spec.paging(page, PAGE_SIZE) } }));
  } catch (err) {
    view.append(errorBox(err));
    return;
  }
  table.append(h("thead", {}, h("tr", {}, spec.columns.map(([t]) => h("th", {}, t)))));
  table.append(h("tbody", {}, data.items.length
    ? data.items.map((row) => h("tr", {}, spec.columns.map(([, cell]) => h("td", {}, cell(row)))))
    : h("tr", {}, h("td", { colspan: spec.columns.length, class: "muted" }, "Nothing here yet."))));

  const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
  const at = (p) => { const q = new URLSearchParams(location.search); q.set("page", p); return `${location.pathname}?${q}`; };
  view.append(h("div", { class: "pager" },
    h("button", { disabled: page <= 1, onclick: () => navigate(at(page - 1)) }, "← Previous"),
    h("span", { class: "muted" }, ` page ${page} of ${pages} · ${data.total} in all `),
    h("button", { disabled: page >= pages, onclick: () => navigate(at(page + 1)) }, "Next →")));
}
