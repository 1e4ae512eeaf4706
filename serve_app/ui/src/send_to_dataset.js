// Send a reviewed file to a dataset: choose the dataset and a draft set (or a new one).

import { api } from "./api.js";
import { h, link } from "./dom.js";

export async function renderSend(box, base, reviewedCount) {
  const datasets = (await api("/api/v1/datasets", { params: { page_size: 100 } })).items;
  const datasetSelect = h("select", { name: "dataset", "data-testid": "send-dataset" },
    datasets.map((d) => h("option", { value: d.id }, d.name)));
  const setSelect = h("select", { name: "annotation_set", "data-testid": "send-set" });
  const result = h("div", { class: "send-result", role: "status" });

  async function loadSets() {
    if (!datasetSelect.value) return;
    const sets = (await api(`/api/v1/datasets/${datasetSelect.value}/annotation-sets`)).items.filter((s) => s.status === "draft");
    setSelect.replaceChildren(h("option", { value: "" }, "a new draft set"),
      sets.map((s) => h("option", { value: s.id }, `draft v${s.version} (${s.total_annotations ?? s.annotation_count ?? 0} annotations)`)));
  }
  datasetSelect.addEventListener("change", loadSets);

  const button = h("button", { "data-action": "send", onclick: async () => {
    if (!reviewedCount()) { result.replaceChildren(h("span", { class: "error" }, "Review at least one detection first.")); return; }
    button.disabled = true;
    try {
      const sent = await api(`${base}/send-to-dataset`, { method: "POST", body: { dataset_id: datasetSelect.value, annotation_set_id: setSelect.value || undefined } });
      result.replaceChildren(
        `Sent: ${sent.annotations_created} annotations and ${sent.reviewed_negatives} reviewed negatives in draft v${sent.annotation_set_version}. `,
        link(`/ui/datasets/${sent.dataset_id}?set=${sent.annotation_set_id}`, "Open the set to publish and train"));
      result.dataset.setId = sent.annotation_set_id;
      result.dataset.audioId = sent.audio_id;
      await loadSets();
    } catch (err) {
      result.replaceChildren(h("span", { class: "error" }, err.message));
    } finally { button.disabled = false; }
  } }, "Send to dataset");

  if (!datasets.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No dataset yet: create one to send reviewed files to."));
    return;
  }
  box.replaceChildren(h("p", {}, "The file becomes audio of the dataset; accepted and corrected detections become annotations of a draft set, rejected ones are recorded as reviewed negatives."),
    h("div", { class: "controls" }, h("label", {}, "Dataset ", datasetSelect), h("label", {}, "Annotation set ", setSelect), button), result);
  await loadSets();
}
