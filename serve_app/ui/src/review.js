// Inference file review: the waveform with detections as regions, filtered live by type and
// confidence, played with context, accepted / rejected / corrected from the keyboard, and the
// reviewed file sent to a dataset as draft annotations.

import { api } from "./api.js";
import { errorBox, fmtTime, h, link, typeColors, withAlpha } from "./dom.js";
import { createWaveform, loadPeaks } from "./waveform.js";

const CONTEXT_S = 0.3; // played before and after a region
const NUDGE_MS = 10;
const PAGE = 100;
const REVIEW_COLORS = { accept: "#12b76a", reject: "#667085", correct: "#2e90fa" };

const KEYS = [
  ["Space", "play / pause"], ["J / K", "next / previous detection"], ["A", "accept"], ["R", "reject"],
  ["E", "edit boundaries (drag), E again saves"], ["[ ]", "start earlier / end later by 10 ms"],
  ["{ }", "start later / end earlier by 10 ms"], ["U", "undo the last review"], ["P", "play the detection with context"],
];

async function allReviews(base) {
  const items = [];
  for (let page = 1; ; page++) {
    const data = await api(`${base}/reviews`, { params: { page, page_size: PAGE } });
    items.push(...data.items);
    if (items.length >= data.total || !data.items.length) return { items, detections: data.detections };
  }
}

async function datasetTypes(modelId) {
  try {
    const model = await api(`/api/v1/models/${modelId}`);
    if (!model.training_job_id) return [];
    const job = await api(`/api/v1/training-jobs/${model.training_job_id}`);
    return (await api(`/api/v1/datasets/${job.dataset_id}`)).artifact_types;
  } catch { return []; } // colours are a nicety: the palette stands in
}

export async function renderReview(view, jobId, fileId, ctx) {
  const base = `/api/v1/inference-jobs/${jobId}/files/${fileId}`;
  const [job, file] = await Promise.all([api(`/api/v1/inference-jobs/${jobId}`), api(base)]);
  view.replaceChildren(h("p", { class: "crumbs" }, link("/ui/inference-jobs", "Inference jobs"), " / ",
    link(`/ui/inference-jobs/${jobId}`, `job ${jobId.slice(0, 8)}`), " / ", file.original_filename));
  if (file.status !== "completed") {
    view.append(h("h1", {}, file.original_filename), h("p", {}, `This file is ${file.status}.`),
      file.error_message ? errorBox(new Error(file.error_message)) : "");
    return;
  }
  const [model, reviewData, download] = await Promise.all([
    api(`/api/v1/models/${job.model_id}`), allReviews(base), api(`${base}/download-url`)]);
  const types = model.artifact_types.map((t) => (typeof t === "string" ? t : t.name));
  const colors = typeColors(types, await datasetTypes(job.model_id));
  const peaks = await loadPeaks(`${base}/peaks`, file.duration_ms);

  // --- state -------------------------------------------------------------------------------------
  const reviews = new Map(reviewData.items.map((r) => [r.detection_id, r]));
  const detections = new Map(); // id -> detection, every one loaded so far
  const state = { minConfidence: 0, hidden: new Set(), selected: null, editing: false, loop: false, stopAt: null, undo: [] };

  // --- layout ------------------------------------------------------------------------------------
  const waveHolder = h("div", { class: "waveform", "data-testid": "waveform" });
  const counter = h("span", { class: "counter", "data-testid": "reviewed-count" });
  const detail = h("div", { class: "detail", "data-testid": "selected" });
  const message = h("div", { class: "message", role: "status" });
  const slider = h("input", { type: "range", min: 0, max: 1, step: 0.01, value: 0, "data-testid": "confidence", oninput: () => {
    state.minConfidence = parseFloat(slider.value);
    sliderValue.textContent = state.minConfidence.toFixed(2);
    applyFilters();
    scheduleLoad();
  } });
  const sliderValue = h("span", { class: "mono" }, "0.00");
  const zoom = h("input", { type: "range", min: 0, max: 1, step: 0.001, value: 0, "data-testid": "zoom", oninput: () => {
    // 0..1 maps logarithmically from "whole file" to 2000 px/s.
    const fit = wave.fitPps();
    wave.zoomTo(fit * Math.pow(2000 / fit, parseFloat(zoom.value)));
  } });
  const toggles = h("div", { class: "types" }, types.map((t) => h("label", { class: "type-toggle", style: { borderColor: colors[t] } },
    h("input", { type: "checkbox", checked: true, "data-type": t, onchange: (e) => {
      if (e.target.checked) state.hidden.delete(t); else state.hidden.add(t);
      applyFilters();
      scheduleLoad();
    } }),
    h("span", { class: "swatch", style: { background: colors[t] } }), t)));
  const loopBox = h("input", { type: "checkbox", onchange: (e) => { state.loop = e.target.checked; } });
  const sendBox = h("div", { class: "send" });

  view.append(
    h("div", { class: "review-head" },
      h("h1", {}, file.original_filename),
      h("span", { class: "muted" }, `${fmtTime(file.duration_ms)} · ${file.detection_count} detections · model ${job.model_version || model.name || model.id.slice(0, 8)}`),
      counter),
    waveHolder,
    h("div", { class: "controls" },
      h("button", { onclick: () => wave.ws.playPause(), title: "Space" }, "Play / pause"),
      h("label", {}, "Zoom ", zoom),
      h("label", {}, "Min confidence ", slider, " ", sliderValue),
      h("label", {}, loopBox, " Loop detection"),
      h("button", { class: "toggle-spectrogram", onclick: () => spectrogram.toggle() }, "Spectrogram")),
    h("div", { class: "legend-row" }, toggles, h("span", { class: "legend muted" },
      h("span", { class: "mark", style: { borderTopColor: REVIEW_COLORS.accept } }), "accepted ",
      h("span", { class: "mark", style: { borderTopColor: REVIEW_COLORS.correct } }), "corrected ",
      h("span", { class: "mark striped" }), "rejected · opacity: confidence")),
    h("div", { class: "review-body" },
      h("section", {}, h("h2", {}, "Detection"), detail, message),
      h("section", {}, h("h2", {}, "Keyboard"), h("dl", { class: "keys" }, KEYS.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))),
    h("section", {}, h("h2", {}, "Send to a dataset"), sendBox));

  const wave = createWaveform(waveHolder, peaks, download.url);
  const { ws, regions } = wave;
  const spectrogram = await import("./spectrogram.js").then((m) => m.attachSpectrogram(waveHolder, wave, `${base}/spectrogram`));

  // --- regions -----------------------------------------------------------------------------------
  const shown = (d) => d.confidence >= state.minConfidence && !state.hidden.has(d.artifact_type);
  const bounds = (d) => {
    const r = reviews.get(d.id);
    return r && r.action === "correct" ? { type: r.artifact_type, start: r.start_ms, end: r.end_ms } : { type: d.artifact_type, start: d.start_ms, end: d.end_ms };
  };
  const drawn = new Map(); // detection id -> its region, while drawn
  const regionOf = (id) => drawn.get(id);
  regions.on("region-removed", (r) => { if (drawn.get(r.id) === r) drawn.delete(r.id); });

  function paint(d) {
    const existing = regionOf(d.id);
    if (!shown(d)) { if (existing) existing.remove(); return; }
    const b = bounds(d);
    const review = reviews.get(d.id);
    const color = withAlpha(colors[b.type] || "#888", 0.15 + 0.5 * d.confidence);
    const editing = state.editing && state.selected === d.id;
    const opts = { id: d.id, start: b.start / 1000, end: b.end / 1000, color, drag: editing, resize: editing };
    const signature = `${opts.start}|${opts.end}|${color}|${editing}|${review?.action}|${state.selected === d.id}`;
    if (existing && existing.fathomSignature === signature) return; // unchanged: no re-render
    const region = existing || regions.addRegion(opts);
    if (existing) region.setOptions(opts);
    else drawn.set(d.id, region);
    region.fathomSignature = signature;
    const el = region.element;
    if (el) {
      el.dataset.type = b.type;
      el.dataset.review = review ? review.action : "";
      // wavesurfer draws regions in its shadow root: state shows through inline styles. Each
      // type has its own lane, so overlapping detections of two types stay visible and clickable.
      const lane = types.indexOf(b.type);
      el.style.top = `${(lane * 100) / types.length}%`;
      el.style.height = `${100 / types.length}%`;
      el.style.boxShadow = state.selected === d.id ? "inset 0 0 0 2px #111827" : "";
      el.style.borderTop = review ? `5px solid ${REVIEW_COLORS[review.action]}` : "";
      el.style.backgroundImage = review?.action === "reject" ? "repeating-linear-gradient(45deg, transparent 0 6px, rgba(255,255,255,0.6) 6px 9px)" : "";
      el.title = `${b.type} ${(d.confidence * 100).toFixed(0)}%${review ? ` · ${review.action}` : ""}`;
    }
  }

  function applyFilters() {
    for (const d of detections.values()) paint(d);
    for (const r of regions.getRegions()) if (!detections.has(r.id)) r.remove();
  }

  function updateCounter() {
    counter.textContent = `${reviews.size} / ${file.detection_count} reviewed`;
  }

  function typesParam() {
    const on = types.filter((t) => !state.hidden.has(t));
    return on.length === types.length ? undefined : on.join(",") || "-";
  }

  // Detections of the visible span and one span either side, so scrolling finds them drawn.
  let loadTimer = null;
  let loadSeq = 0;
  function scheduleLoad() { clearTimeout(loadTimer); loadTimer = setTimeout(loadVisible, 80); }
  async function loadVisible() {
    const { start, end } = wave.visible();
    const span = Math.max(end - start, 1);
    const from = Math.max(0, Math.floor((start - span) * 1000));
    const to = Math.ceil((end + span) * 1000) + 1;
    const seq = ++loadSeq;
    const data = await api(`${base}/detections`, { params: { start_ms: from, end_ms: to, min_confidence: state.minConfidence, types: typesParam() } });
    if (seq !== loadSeq) return;
    for (const d of data.items) if (!detections.has(d.id)) detections.set(d.id, d);
    // Keep the drawn regions to the loaded window (and the selected one): thousands stay cheap.
    for (const r of regions.getRegions()) {
      const d = detections.get(r.id);
      if (d && r.id !== state.selected && (d.end_ms < from || d.start_ms > to)) r.remove();
    }
    for (const d of data.items) paint(d);
    if (window.fathomTest) window.fathomTest.loads = (window.fathomTest.loads || 0) + 1;
  }
  ws.on("scroll", scheduleLoad);
  ws.on("zoom", scheduleLoad);

  // --- selection, playback -----------------------------------------------------------------------
  function describe() {
    const d = detections.get(state.selected);
    if (!d) { detail.replaceChildren(h("p", { class: "muted" }, "Click a region, or press J.")); return; }
    const b = bounds(d);
    const review = reviews.get(d.id);
    const typeSelect = h("select", { "data-testid": "correct-type", disabled: !state.editing },
      types.map((t) => h("option", { value: t, selected: t === b.type }, t)));
    typeSelect.addEventListener("change", () => { state.pendingType = typeSelect.value; });
    detail.replaceChildren(
      h("p", {}, h("span", { class: "swatch", style: { background: colors[b.type] } }), ` ${b.type} `,
        h("span", { class: "mono" }, `${fmtTime(b.start)} – ${fmtTime(b.end)}`), ` · confidence ${d.confidence.toFixed(2)}`),
      h("p", {}, "Review: ", h("strong", { "data-testid": "review-state" }, review ? review.action : "none"),
        review && review.action === "correct" ? ` (was ${d.artifact_type} ${fmtTime(d.start_ms)} – ${fmtTime(d.end_ms)})` : ""),
      h("div", { class: "actions" },
        h("button", { onclick: () => review_("accept"), "data-action": "accept" }, "Accept (A)"),
        h("button", { onclick: () => review_("reject"), "data-action": "reject" }, "Reject (R)"),
        h("button", { onclick: () => toggleEdit(), "data-action": "edit" }, state.editing ? "Save correction (E)" : "Edit (E)"),
        typeSelect,
        h("button", { onclick: () => playSelected(), "data-action": "play" }, "Play (P)"),
        h("button", { onclick: () => undo(), disabled: !state.undo.length, "data-action": "undo" }, "Undo (U)")));
  }

  function select(id, { seek = true } = {}) {
    const previous = state.selected;
    if (state.editing && previous !== id) cancelEdit();
    state.selected = id;
    const d = detections.get(id);
    if (previous && detections.has(previous)) paint(detections.get(previous));
    if (d) {
      paint(d);
      if (seek) ws.setTime(bounds(d).start / 1000);
      const { start, end } = wave.visible();
      const b = bounds(d);
      if (b.start / 1000 < start || b.end / 1000 > end) ws.setScrollTime(Math.max(0, b.start / 1000 - (end - start) / 4));
    }
    describe();
  }

  function playSelected() {
    const d = detections.get(state.selected);
    if (!d) return;
    const b = bounds(d);
    ws.setTime(Math.max(0, b.start / 1000 - CONTEXT_S));
    state.stopAt = { from: Math.max(0, b.start / 1000 - CONTEXT_S), to: Math.min(peaks.durationS, b.end / 1000 + CONTEXT_S) };
    ws.play();
  }
  ws.on("timeupdate", (t) => {
    if (!state.stopAt || t < state.stopAt.to) return;
    if (state.loop) ws.setTime(state.stopAt.from);
    else { ws.pause(); state.stopAt = null; }
  });
  ws.on("interaction", () => { state.stopAt = null; });

  regions.on("region-clicked", (region, e) => {
    e.stopPropagation();
    select(region.id);
  });
  regions.on("region-updated", (region) => {
    if (!state.editing || region.id !== state.selected) return;
    state.pendingBounds = { start: Math.round(region.start * 1000), end: Math.round(region.end * 1000) };
  });

  async function neighbour(direction) {
    // The next (or previous) shown detection after the selected one, asked of the API by window.
    const current = detections.get(state.selected);
    // Time order is the detections' own (as the API sorts them), not their corrected bounds.
    const t = current ? current.start_ms : Math.round(ws.getCurrentTime() * 1000) - (direction > 0 ? 1 : 0);
    const params = { min_confidence: state.minConfidence, types: typesParam() };
    const key = (d) => [d.start_ms, d.id];
    const after = (d) => d.start_ms > t || (current && d.start_ms === t && d.id > current.id);
    const before = (d) => d.start_ms < t || (current && d.start_ms === t && d.id < current.id);
    const durationMs = peaks.durationS * 1000;
    for (let span = 60_000; ; span *= 4) {
      const from = direction > 0 ? Math.max(0, t) : Math.max(0, t - span);
      const to = direction > 0 ? Math.min(durationMs, t + span) + 1 : t + 1;
      const data = await api(`${base}/detections`, { params: { ...params, start_ms: from, end_ms: to } });
      for (const d of data.items) if (!detections.has(d.id)) detections.set(d.id, d);
      const found = data.items.filter(direction > 0 ? after : before).filter((d) => d.id !== current?.id);
      if (found.length) {
        found.sort((a, b) => (key(a)[0] - key(b)[0]) || (a.id < b.id ? -1 : 1));
        return direction > 0 ? found[0] : found[found.length - 1];
      }
      if ((direction > 0 && to > durationMs) || (direction < 0 && from === 0)) return null;
    }
  }
  async function step(direction) {
    const d = await neighbour(direction);
    if (d) select(d.id); else note(direction > 0 ? "No later detection." : "No earlier detection.");
  }

  // --- reviews -----------------------------------------------------------------------------------
  function note(text, isError = false) {
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  async function review_(action, extra = {}) {
    const d = detections.get(state.selected);
    if (!d) { note("Select a detection first."); return; }
    try {
      const previous = reviews.get(d.id) || null;
      const r = await api(`${base}/reviews`, { method: "POST", body: { detection_id: d.id, action, ...extra } });
      reviews.set(d.id, r);
      state.undo.push({ detectionId: d.id, review: r, previous });
      note(`${action === "correct" ? "Corrected" : action === "accept" ? "Accepted" : "Rejected"} ${d.artifact_type} at ${fmtTime(d.start_ms)}.`);
    } catch (err) { note(err.message, true); }
    paint(d);
    updateCounter();
    describe();
  }

  async function undo() {
    const last = state.undo.pop();
    if (!last) { note("Nothing to undo."); return; }
    try {
      await api(`${base}/reviews/${last.review.id}`, { method: "DELETE" });
      if (last.previous) {
        const { action, artifact_type, start_ms, end_ms, note: text } = last.previous;
        const body = action === "correct" ? { artifact_type, start_ms, end_ms } : {};
        reviews.set(last.detectionId, await api(`${base}/reviews`, { method: "POST", body: { detection_id: last.detectionId, action, note: text || undefined, ...body } }));
      } else reviews.delete(last.detectionId);
      note("Undone.");
    } catch (err) { note(err.message, true); }
    const d = detections.get(last.detectionId);
    if (d) paint(d);
    updateCounter();
    describe();
  }

  function toggleEdit() {
    if (!state.selected) { note("Select a detection first."); return; }
    if (!state.editing) {
      state.editing = true;
      const b = bounds(detections.get(state.selected));
      state.pendingBounds = { start: b.start, end: b.end };
      state.pendingType = b.type;
      paint(detections.get(state.selected));
      note("Drag the region's edges, or nudge with [ ] { }; E saves.");
      describe();
      return;
    }
    const { start, end } = state.pendingBounds;
    state.editing = false;
    return review_("correct", { artifact_type: state.pendingType, start_ms: start, end_ms: end });
  }
  function cancelEdit() {
    state.editing = false;
    state.pendingBounds = null;
    const d = detections.get(state.selected);
    if (d) paint(d);
  }
  function nudge(side, deltaMs) {
    if (!state.editing) { note("Press E to edit the boundaries first."); return; }
    const p = state.pendingBounds;
    const durationMs = Math.round(peaks.durationS * 1000);
    if (side === "start") p.start = Math.max(0, Math.min(p.end - 1, p.start + deltaMs));
    else p.end = Math.min(durationMs, Math.max(p.start + 1, p.end + deltaMs));
    regionOf(state.selected)?.setOptions({ start: p.start / 1000, end: p.end / 1000 });
    note(`${fmtTime(p.start)} – ${fmtTime(p.end)} (unsaved; E saves)`);
  }

  function onKey(e) {
    if (e.target.closest("input[type=text], input:not([type]), textarea, select") || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    const actions = {
      " ": () => ws.playPause(), j: () => step(1), k: () => step(-1), a: () => review_("accept"), r: () => review_("reject"),
      e: () => toggleEdit(), u: () => undo(), p: () => playSelected(), Escape: () => cancelEdit(),
      "[": () => nudge("start", -NUDGE_MS), "]": () => nudge("end", NUDGE_MS), "{": () => nudge("start", NUDGE_MS), "}": () => nudge("end", -NUDGE_MS),
    };
    const fn = actions[k] || actions[k.toLowerCase()];
    if (!fn) return;
    e.preventDefault();
    // One key at a time: J then A accepts the detection J moved to, however fast they come.
    keyChain = keyChain.then(fn).catch((err) => note(err.message, true));
  }
  let keyChain = Promise.resolve();
  document.addEventListener("keydown", onKey);
  ctx.onLeave(() => { document.removeEventListener("keydown", onKey); ws.destroy(); spectrogram.destroy(); });

  // --- send to a dataset -------------------------------------------------------------------------
  const { renderSend } = await import("./send_to_dataset.js");
  renderSend(sendBox, base, () => reviews.size);

  updateCounter();
  describe();
  await new Promise((resolve) => { if (ws.getDuration() > 0) resolve(); else ws.once("ready", resolve); });
  await loadVisible();
  if (window.fathomTest) {
    Object.assign(window.fathomTest, {
      ready: true,
      ws,
      regions: () => regions.getRegions().map((r) => ({ id: r.id, start: r.start, end: r.end, type: r.element?.dataset.type, review: r.element?.dataset.review })),
      currentTime: () => ws.getCurrentTime(),
      visible: () => wave.visible(),
      select,
    });
  }
}
