// The annotation editor: one dataset audio file's annotations in one set, on the same waveform
// as the review page. A draft set is edited in place (drag on the waveform to draw, drag a
// region or its edges to move or resize, Delete removes the selected one); a published set is
// shown read-only. New regions may not overlap an existing one unless Shift is held.

import { api } from "./api.js";
import { errorBox, fmtTime, h, link, typeColors, withAlpha } from "./dom.js";
import { createWaveform, loadPeaks } from "./waveform.js";

export async function renderAnnotate(view, datasetId, audioId, ctx) {
  const base = `/api/v1/datasets/${datasetId}/audio/${audioId}`;
  const [dataset, audio, sets] = await Promise.all([
    api(`/api/v1/datasets/${datasetId}`), api(base), api(`/api/v1/datasets/${datasetId}/annotation-sets`)]);
  const types = dataset.artifact_types.map((t) => t.name);
  const colors = typeColors(types, dataset.artifact_types);
  const wanted = new URLSearchParams(location.search).get("set");
  const chosen = sets.items.find((s) => s.id === wanted) || sets.items.find((s) => s.status === "draft") || sets.items[0];
  view.replaceChildren(h("p", { class: "crumbs" }, link("/ui/datasets", "Datasets"), " / ",
    link(`/ui/datasets/${datasetId}`, dataset.name), ` / ${audio.original_filename}`));
  if (audio.processing_status !== "ready") {
    view.append(h("h1", {}, audio.original_filename), h("p", {}, `This file is ${audio.processing_status}.`));
    return;
  }
  if (!chosen) {
    view.append(h("h1", {}, audio.original_filename), h("p", {}, "This dataset has no annotation set yet: ",
      link(`/ui/datasets/${datasetId}`, "start one"), "."));
    return;
  }
  const setBase = `/api/v1/datasets/${datasetId}/annotation-sets/${chosen.id}`;
  const editable = chosen.status === "draft";
  const [detail, download, peaks] = await Promise.all([api(setBase), api(`${base}/download-url`), loadPeaks(`${base}/peaks`, audio.duration_ms)]);
  const annotations = new Map(detail.annotations.filter((a) => a.audio_file_id === audioId).map((a) => [a.id, a]));

  const state = { type: types[0], selected: null, shift: false };
  const message = h("div", { class: "message", role: "status" });
  const count = h("span", { class: "counter", "data-testid": "annotation-count" });
  const setSelect = h("select", { "data-testid": "set", onchange: () => ctx.navigate(`/ui/datasets/${datasetId}/audio/${audioId}?set=${setSelect.value}`) },
    sets.items.map((s) => h("option", { value: s.id, selected: s.id === chosen.id }, `v${s.version} (${s.status})`)));
  const typeSelect = h("select", { "data-testid": "type", disabled: !editable, onchange: async () => {
    state.type = typeSelect.value;
    const a = annotations.get(state.selected);
    if (a && editable && a.artifact_type !== state.type) await save(a.id, { artifact_type: state.type });
  } }, types.map((t) => h("option", { value: t }, t)));
  const holder = h("div", { class: "waveform" });
  const selectedBox = h("div", { "data-testid": "selected" });
  view.append(
    h("div", { class: "review-head" }, h("h1", {}, audio.original_filename),
      h("span", { class: "muted" }, `${fmtTime(audio.duration_ms)} · annotation set v${chosen.version} · ${editable ? "draft: editable" : "published: read-only"}`), count),
    holder,
    h("div", { class: "controls" },
      h("button", { onclick: () => wave.ws.playPause() }, "Play / pause"),
      h("label", {}, "Set ", setSelect), h("label", {}, "Type ", typeSelect),
      editable ? h("button", { "data-action": "delete", onclick: () => remove() }, "Delete selected (Del)") : ""),
    editable ? h("p", { class: "muted" }, "Drag on the waveform to draw an annotation of the chosen type; hold Shift to let it overlap another. Drag a region or its edges to change it; Delete removes the selected one.")
      : h("p", { class: "muted" }, "A published set is read-only: start a new draft set to change annotations."),
    selectedBox, message);

  const wave = createWaveform(holder, peaks, download.url);
  const { ws, regions } = wave;
  const known = new Set();
  const style = (a) => ({ color: withAlpha(colors[a.artifact_type] || "#888", 0.35), drag: editable, resize: editable });

  function draw(a) {
    known.add(a.id);
    const r = regions.addRegion({ id: a.id, start: a.start_ms / 1000, end: a.end_ms / 1000, ...style(a) });
    if (r.element) r.element.dataset.type = a.artifact_type;
  }
  function refresh() {
    count.textContent = `${annotations.size} annotation${annotations.size === 1 ? "" : "s"} in this file`;
    const a = annotations.get(state.selected);
    selectedBox.replaceChildren(a ? h("p", {}, h("span", { class: "swatch", style: { background: colors[a.artifact_type] } }),
      ` ${a.artifact_type} `, h("span", { class: "mono" }, `${fmtTime(a.start_ms)} – ${fmtTime(a.end_ms)}`)) : h("p", { class: "muted" }, "Click a region to select it."));
    for (const r of regions.getRegions()) {
      if (r.element) r.element.style.boxShadow = r.id === state.selected ? "inset 0 0 0 2px #111827" : "";
    }
  }
  const note = (text, isError = false) => { message.textContent = text; message.classList.toggle("error", isError); };
  const overlaps = (start, end, except) => [...annotations.values()].some((a) => a.id !== except && a.start_ms < end && start < a.end_ms);

  async function save(id, changes) {
    try {
      const updated = await api(`${setBase}/annotations/${id}`, { method: "PATCH", body: changes });
      annotations.set(id, updated);
      const r = regions.getRegions().find((x) => x.id === id);
      if (r) { r.setOptions({ start: updated.start_ms / 1000, end: updated.end_ms / 1000, color: style(updated).color }); if (r.element) r.element.dataset.type = updated.artifact_type; }
      note(`Saved ${updated.artifact_type} ${fmtTime(updated.start_ms)} – ${fmtTime(updated.end_ms)}.`);
    } catch (err) {
      note(err.message, true);
      const old = annotations.get(id);
      regions.getRegions().find((x) => x.id === id)?.setOptions({ start: old.start_ms / 1000, end: old.end_ms / 1000 });
    }
    refresh();
  }
  async function remove() {
    const id = state.selected;
    if (!id || !editable) return;
    try {
      await api(`${setBase}/annotations/${id}`, { method: "DELETE" });
      annotations.delete(id);
      regions.getRegions().find((x) => x.id === id)?.remove();
      state.selected = null;
      note("Deleted.");
    } catch (err) { note(err.message, true); }
    refresh();
  }

  regions.on("region-created", async (r) => {
    if (known.has(r.id)) return;
    // Drawn by the user: its bounds are where the pointer went down and came up (the plugin's
    // drag region runs a few pixels past the pointer). Refused where it overlaps, unless Shift is held.
    const at = (x) => { const v = wave.visible(); return Math.max(0, Math.min(peaks.durationS, (x - v.left) / v.pps)); };
    const [t0, t1] = pointer.down !== null && pointer.up !== null ? [at(pointer.down), at(pointer.up)].sort((p, q) => p - q) : [r.start, r.end];
    const start = Math.round(t0 * 1000), end = Math.round(t1 * 1000);
    if (end - start < 10) { r.remove(); return; }
    if (overlaps(start, end) && !state.shift) { r.remove(); note("That overlaps an annotation: hold Shift while drawing to allow it.", true); return; }
    r.remove();
    try {
      const a = await api(`${setBase}/annotations`, { method: "POST", body: { audio_file_id: audioId, artifact_type: state.type, start_ms: start, end_ms: end } });
      annotations.set(a.id, a);
      draw(a);
      state.selected = a.id;
      note(`Added ${a.artifact_type} ${fmtTime(start)} – ${fmtTime(end)}.`);
    } catch (err) { note(err.message, true); }
    refresh();
  });
  regions.on("region-updated", (r) => {
    if (!editable || !annotations.has(r.id)) return;
    const start = Math.round(r.start * 1000), end = Math.round(r.end * 1000);
    state.selected = r.id;
    save(r.id, { start_ms: start, end_ms: end });
  });
  regions.on("region-clicked", (r, e) => {
    e.stopPropagation();
    state.selected = r.id;
    const a = annotations.get(r.id);
    if (a) { typeSelect.value = a.artifact_type; state.type = a.artifact_type; }
    ws.setTime(r.start);
    refresh();
  });

  const onKey = (e) => {
    state.shift = e.shiftKey;
    if (e.type !== "keydown" || e.target.closest("input, textarea, select")) return;
    if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); remove(); }
    else if (e.key === " ") { e.preventDefault(); ws.playPause(); }
  };
  const pointer = { down: null, up: null };
  const onPointer = (e) => {
    state.shift = e.shiftKey;
    if (e.type === "pointerdown") { pointer.down = e.clientX; pointer.up = null; } else pointer.up = e.clientX;
  };
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", onKey);
  holder.addEventListener("pointerdown", onPointer, true);
  document.addEventListener("pointerup", onPointer, true);
  ctx.onLeave(() => { document.removeEventListener("keydown", onKey); document.removeEventListener("keyup", onKey); document.removeEventListener("pointerup", onPointer, true); ws.destroy(); });

  await new Promise((resolve) => { if (ws.getDuration() > 0) resolve(); else ws.once("ready", resolve); });
  for (const a of annotations.values()) draw(a);
  if (editable) regions.enableDragSelection({ color: withAlpha(colors[state.type] || "#888", 0.3) });
  refresh();
  if (window.fathomTest) Object.assign(window.fathomTest, {
    ready: true, ws,
    regions: () => regions.getRegions().map((r) => ({ id: r.id, start: r.start, end: r.end, type: r.element?.dataset.type })),
    visible: () => wave.visible(),
  });
}
