// A dataset: its annotation sets (publish a draft, train on a published one) and its audio files.

import { api } from "./api.js";
import { errorBox, fmtDate, fmtTime, h, link, status, typeColors } from "./dom.js";

const PAGE_SIZE = 50;

export async function renderDataset(view, datasetId, ctx) {
  const params = new URLSearchParams(location.search);
  const focusSet = params.get("set");
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const [dataset, sets, audio] = await Promise.all([
    api(`/api/v1/datasets/${datasetId}`),
    api(`/api/v1/datasets/${datasetId}/annotation-sets`),
    api(`/api/v1/datasets/${datasetId}/audio`, { params: { page, page_size: PAGE_SIZE } }),
  ]);
  const colors = typeColors(dataset.artifact_types.map((t) => t.name), dataset.artifact_types);
  const message = h("div", { class: "message", role: "status" });
  const editorSet = focusSet || sets.items.find((s) => s.status === "draft")?.id || sets.items[0]?.id || "";

  async function publish(set) {
    try {
      await api(`/api/v1/datasets/${datasetId}/annotation-sets/${set.id}/publish`, { method: "POST" });
      ctx.navigate(`/ui/datasets/${datasetId}?set=${set.id}`);
    } catch (err) { message.replaceChildren(errorBox(err)); }
  }
  async function train(set) {
    const types = Object.keys(set.annotations_by_type).filter((t) => set.annotations_by_type[t] > 0);
    try {
      const job = await api("/api/v1/training-jobs", { method: "POST", body: { dataset_id: datasetId, annotation_set_id: set.id, config: { artifact_types: types } } });
      ctx.navigate(`/ui/training-jobs/${job.id}`);
    } catch (err) { message.replaceChildren(errorBox(err)); }
  }

  const pages = Math.max(1, Math.ceil(audio.total / PAGE_SIZE));
  view.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/datasets", "Datasets"), ` / ${dataset.name}`),
    h("h1", {}, dataset.name),
    dataset.description ? h("p", {}, dataset.description) : "",
    h("p", { class: "types" }, dataset.artifact_types.map((t) => h("span", { class: "type-toggle", style: { borderColor: colors[t.name] } },
      h("span", { class: "swatch", style: { background: colors[t.name] } }), t.name))),
    h("h2", {}, "Annotation sets"), message,
    h("table", { class: "list", "data-list": "annotation-sets" },
      h("thead", {}, h("tr", {}, ["Version", "Status", "Annotations", "By type", "Annotated", "Created", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, sets.items.length ? sets.items.map((s) => h("tr", { class: s.id === focusSet ? "focus" : "", "data-set": s.id },
        h("td", {}, `v${s.version}`), h("td", {}, status(s.status)), h("td", {}, s.total_annotations),
        h("td", {}, Object.entries(s.annotations_by_type).map(([t, n]) => `${t} ${n}`).join(", ") || "–"),
        h("td", {}, fmtTime(s.total_positive_duration_ms)), h("td", {}, fmtDate(s.created_at)),
        h("td", {},
          s.status === "draft" ? h("button", { "data-action": "publish", onclick: () => publish(s), disabled: !s.total_annotations }, "Publish") : "",
          s.status === "published" ? h("button", { "data-action": "train", onclick: () => train(s) }, "Train a detector") : "")))
        : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No annotation set yet.")))),
    h("div", { class: "controls" }, h("button", { "data-action": "new-set", onclick: async () => {
      try {
        const s = await api(`/api/v1/datasets/${datasetId}/annotation-sets`, { method: "POST" });
        ctx.navigate(`/ui/datasets/${datasetId}?set=${s.id}`);
      } catch (err) { message.replaceChildren(errorBox(err)); }
    } }, "New draft set")),
    h("h2", {}, `Audio (${audio.total})`),
    h("table", { class: "list", "data-list": "audio" },
      h("thead", {}, h("tr", {}, ["File", "Status", "Duration", "Uploaded"].map((t) => h("th", {}, t)))),
      h("tbody", {}, audio.items.length ? audio.items.map((a) => h("tr", {},
        h("td", {}, a.processing_status === "ready"
          ? link(`/ui/datasets/${datasetId}/audio/${a.id}${editorSet ? `?set=${editorSet}` : ""}`, a.original_filename) : a.original_filename),
        h("td", {}, status(a.processing_status), a.error_message ? h("div", { class: "error small" }, a.error_message) : ""),
        h("td", {}, fmtTime(a.duration_ms)), h("td", {}, fmtDate(a.created_at))))
        : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No audio yet.")))),
    h("div", { class: "pager" },
      h("button", { disabled: page <= 1, onclick: () => ctx.navigate(`/ui/datasets/${datasetId}?page=${page - 1}`) }, "← Previous"),
      h("span", { class: "muted" }, ` page ${page} of ${pages} `),
      h("button", { disabled: page >= pages, onclick: () => ctx.navigate(`/ui/datasets/${datasetId}?page=${page + 1}`) }, "Next →")));
}
