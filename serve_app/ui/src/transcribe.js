// Transcribe a file with a model reference (a base, custom_model_{id}, @version or @alias) and
// boost terms; the transcript's words are timed: clicking one seeks to it, the word being played
// is highlighted, words under 0.6 confidence are underlined, and the waveform marks each word.
// The file is the user's own and short (a synchronous request), so the browser decodes it.

import WaveSurfer from "wavesurfer.js";
import RegionsPlugin from "wavesurfer.js/plugins/regions.esm.js";
import { api } from "./api.js";
import { errorBox, h } from "./dom.js";

const BASES = ["general", "medical", "legal", "technical"];
const LOW_CONFIDENCE = 0.6;

export async function renderTranscribe(view, ctx) {
  const wantedModel = new URLSearchParams(location.search).get("model") || "general";
  let customs = [];
  try { customs = (await api("/api/v3/custom_models", { params: { per_page: 100, training_status: 4 } })).result; } catch { /* bases still work */ }
  const fileInput = h("input", { type: "file", name: "audio_file", accept: "audio/*", "data-testid": "file" });
  const model = h("input", { name: "model", list: "models", value: wantedModel, size: 36, "data-testid": "model" });
  const boost = h("input", { name: "boost_terms", placeholder: "comma-separated terms", size: 40, "data-testid": "boost" });
  const submit = h("button", { type: "submit" }, "Transcribe");
  // Or one of a custom model's test pairs: its audio fetched by URL, its transcript shown as the reference.
  const pairSelect = h("select", { "data-testid": "pair" }, h("option", { value: "" }, "an uploaded file"));
  let pairModel = null;
  async function loadPairs() {
    const m = model.value.trim().match(/^custom_model_(\d+)/);
    const id = m ? m[1] : null;
    if (id === pairModel) return;
    pairModel = id;
    pairSelect.replaceChildren(h("option", { value: "" }, "an uploaded file"));
    if (!id) return;
    try {
      const data = await api(`/api/v3/custom_models/${id}/data`, { params: { type: "test", per_page: 100 } });
      pairSelect.append(...data.result.map((p) => h("option", { value: p.id }, `test pair ${p.id}: ${p.filename}`)));
    } catch { /* not a model of this key: uploads still work */ }
  }
  model.addEventListener("change", loadPairs);
  const out = h("div", { class: "transcript-box" });
  const form = h("form", { class: "controls", onsubmit: async (e) => {
    e.preventDefault();
    let file = fileInput.files[0];
    let reference = null;
    if (pairSelect.value) {
      const pair = await api(`/api/v3/custom_models/${pairModel}/data/${pairSelect.value}/audio-url`);
      const audio = await fetch(pair.url);
      file = new File([await audio.blob()], pair.filename, { type: audio.headers.get("content-type") || "audio/wav" });
      reference = pair.transcript;
    }
    if (!file) { out.replaceChildren(errorBox(new Error("Choose a file, or a test pair of a custom model."))); return; }
    const body = new FormData();
    body.set("audio_file", file);
    body.set("model", model.value.trim());
    body.set("language", "en");
    if (boost.value.trim()) body.set("boost_terms", boost.value.trim());
    submit.disabled = true;
    out.replaceChildren(h("p", { class: "muted" }, "Transcribing…"));
    try {
      const result = await api("/api/v3/stt", { method: "POST", body });
      show(out, file, result, ctx, reference);
    } catch (err) { out.replaceChildren(errorBox(err)); }
    finally { submit.disabled = false; }
  } },
  h("label", {}, "Audio ", fileInput), h("label", {}, "or ", pairSelect), h("label", {}, "Model ", model), h("label", {}, "Boost ", boost), submit);
  view.replaceChildren(h("h1", {}, "Transcribe"), form,
    h("datalist", { id: "models" }, [...BASES, ...customs.flatMap((m) => [m.key, `${m.key}@production`])].map((v) => h("option", { value: v }))),
    out);
  await loadPairs();
  if (window.fathomTest) window.fathomTest.ready = true;
}

function show(out, file, result, ctx, reference) {
  const holder = h("div", { class: "waveform" });
  const words = result.words.map((w, i) => h("span", {
    class: `word${w.confidence < LOW_CONFIDENCE ? " low" : ""}`, "data-index": i, "data-start": w.start,
    title: `${w.start.toFixed(2)}–${w.end.toFixed(2)} s · confidence ${w.confidence.toFixed(2)}`,
    onclick: () => { ws.setTime(w.start); highlight(w.start); },
  }, w.word));
  out.replaceChildren(
    h("p", { class: "muted" }, `${result.model} · ${result.duration.toFixed(2)} s · ${result.words.length} words`),
    holder,
    h("div", { class: "controls" }, h("button", { onclick: () => ws.playPause() }, "Play / pause")),
    h("p", { class: "transcript", "data-testid": "transcript" }, words.flatMap((el) => [el, " "])),
    reference ? h("p", { class: "muted", "data-testid": "reference" }, "Reference: ", reference) : "");
  const regions = RegionsPlugin.create();
  const ws = WaveSurfer.create({ container: holder, url: URL.createObjectURL(file), height: 100, waveColor: "#6b7a99",
    progressColor: "#2f3b59", cursorColor: "#d62728", plugins: [regions] });
  ws.on("decode", () => {
    for (const w of result.words) regions.addRegion({ start: w.start, color: "rgba(47, 59, 89, 0.5)", drag: false });
  });
  let current = -1;
  function highlight(t) {
    const i = result.words.findIndex((w) => t >= w.start && t < w.end);
    if (i === current) return;
    if (current >= 0) words[current].classList.remove("current");
    if (i >= 0) words[i].classList.add("current");
    current = i;
  }
  ws.on("timeupdate", highlight);
  ctx.onLeave(() => ws.destroy());
  if (window.fathomTest) Object.assign(window.fathomTest, { ws, currentWord: () => current, currentTime: () => ws.getCurrentTime(), transcribed: true });
}
