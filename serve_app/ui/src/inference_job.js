// An inference job: its files with detections per type, review progress, and the next file to review.

import { api } from "./api.js";
import { errorBox, fmtDate, fmtTime, h, link, status } from "./dom.js";

export async function renderInferenceJob(view, jobId) {
  const job = await api(`/api/v1/inference-jobs/${jobId}`);
  const types = [...new Set(job.files.flatMap((f) => f.detections.map((d) => d.artifact_type)))].sort();
  const reviewed = await Promise.all(job.files.map((f) => (f.status === "completed"
    ? api(`/api/v1/inference-jobs/${jobId}/files/${f.id}/reviews`, { params: { page_size: 1 } }).then((r) => r.reviewed).catch(() => 0)
    : Promise.resolve(0))));
  const next = job.files.find((f, i) => f.status === "completed" && f.detection_count > reviewed[i]);
  view.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/inference-jobs", "Inference jobs"), ` / job ${jobId.slice(0, 8)}`),
    h("h1", {}, `Inference job ${jobId.slice(0, 8)}`),
    h("p", {}, status(job.status), ` · model ${job.model_version || job.model_reference || job.model_id} · ${job.processed_files}/${job.total_files} files · ${job.total_detections} detections · created ${fmtDate(job.created_at)}`),
    job.error_message ? errorBox(new Error(job.error_message)) : "",
    next ? h("p", {}, link(`/ui/inference-jobs/${jobId}/files/${next.id}`, `Review the next unreviewed file: ${next.original_filename} →`))
      : h("p", { class: "muted" }, "Every processed file's detections are reviewed."),
    h("table", { class: "list", "data-list": "files" },
      h("thead", {}, h("tr", {}, h("th", {}, "File"), h("th", {}, "Status"), h("th", {}, "Duration"),
        types.map((t) => h("th", {}, t)), h("th", {}, "Reviewed"))),
      h("tbody", {}, job.files.map((f, i) => h("tr", {},
        h("td", {}, f.status === "completed" ? link(`/ui/inference-jobs/${jobId}/files/${f.id}`, f.original_filename) : f.original_filename),
        h("td", {}, status(f.status), f.error_message ? h("div", { class: "error small" }, f.error_message) : null),
        h("td", {}, fmtTime(f.duration_ms)),
        types.map((t) => h("td", {}, f.detections.filter((d) => d.artifact_type === t).length)),
        h("td", {}, `${reviewed[i]} / ${f.detection_count}`))))));
}
