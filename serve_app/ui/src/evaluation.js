// An evaluation: the summary of each model with the paired-bootstrap interval of their
// difference, and the per-file table sortable by score, errors and difference between models.
// A row opens the file: false positives and misses on the waveform (detectors), or the reference
// and hypothesis aligned with substitutions, deletions and insertions coloured (STT).

import { api } from "./api.js";
import { errorBox, fmtDate, fmtNum, h, link, status, withAlpha } from "./dom.js";

async function allRows(id) {
  const rows = [];
  for (let page = 1; ; page++) {
    const data = await api(`/api/v1/evaluations/${id}/files`, { params: { page, page_size: 100 } });
    rows.push(...data.items);
    if (!data.items.length || rows.length >= data.total) return rows;
  }
}

function summaryCells(kind, s) {
  if (!s) return ["–", "–", "–"];
  const [unit, digits] = kind === "stt" ? ["%", 2] : ["", 4];
  const ci = s.interval && s.interval.ci_low !== null
    ? ` (95% ${fmtNum(s.interval.ci_low, digits)}${unit} to ${fmtNum(s.interval.ci_high, digits)}${unit})` : "";
  return kind === "stt"
    ? [`WER ${fmtNum(s.word_error_rate, 2)}%${ci}`, `CER ${fmtNum(s.character_error_rate, 2)}%`, `${s.substitutions} S · ${s.deletions} D · ${s.insertions} I`]
    : [`F1 ${fmtNum(s.f1_score, 4)}${ci}`, `P ${fmtNum(s.precision, 4)} · R ${fmtNum(s.recall, 4)}`, `${s.true_positives} TP · ${s.insertions} FP · ${s.deletions} FN`];
}

function alignment(row) {
  const ref = row.reference.split(" ").filter(Boolean), hyp = row.hypothesis.split(" ").filter(Boolean);
  const refLine = [], hypLine = [];
  for (const a of row.alignment) {
    const r = ref.slice(a.ref_start, a.ref_end), y = hyp.slice(a.hyp_start, a.hyp_end);
    const cls = { equal: "op-equal", substitute: "op-sub", delete: "op-del", insert: "op-ins" }[a.type] || "";
    refLine.push(...r.map((w) => h("span", { class: cls }, w, " ")));
    hypLine.push(...y.map((w) => h("span", { class: cls }, w, " ")));
    if (a.type === "delete") hypLine.push(h("span", { class: "op-del gap" }, "∅ "));
    if (a.type === "insert") refLine.push(h("span", { class: "op-ins gap" }, "∅ "));
  }
  return h("div", { class: "alignment", "data-testid": "alignment" },
    h("p", {}, h("strong", {}, "Reference: "), refLine), h("p", {}, h("strong", {}, "Hypothesis: "), hypLine),
    h("p", { class: "legend muted" }, h("span", { class: "op-sub" }, "substitution"), " ", h("span", { class: "op-del" }, "deletion"), " ",
      h("span", { class: "op-ins" }, "insertion")));
}

async function detectorFile(box, evaluation, row, ctx) {
  const ds = evaluation.data.dataset_id;
  const base = `/api/v1/datasets/${ds}/audio/${row.file_id}`;
  const { createWaveform, loadPeaks } = await import("./waveform.js");
  const audio = await api(base);
  const [download, peaks] = await Promise.all([api(`${base}/download-url`), loadPeaks(`${base}/peaks`, audio.duration_ms)]);
  const holder = h("div", { class: "waveform" });
  const spans = Object.entries(row.details.classes || {}).flatMap(([t, c]) => [
    ...c.false_positives.map((e) => ({ ...e, type: t, kind: "false positive" })),
    ...c.missed.map((e) => ({ ...e, type: t, kind: "missed" }))]);
  box.replaceChildren(h("h3", {}, `${row.filename} · ${row.label}`),
    h("p", { class: "muted" }, h("span", { class: "swatch", style: { background: "#d92d20" } }), " false positive  ",
      h("span", { class: "swatch", style: { background: "#f79009" } }), " missed"), holder,
    h("ul", {}, spans.map((s) => h("li", {}, `${s.kind}: ${s.type} ${s.start_ms}–${s.end_ms} ms`))));
  const wave = createWaveform(holder, peaks, download.url);
  await new Promise((resolve) => { if (wave.ws.getDuration() > 0) resolve(); else wave.ws.once("ready", resolve); });
  for (const s of spans) {
    const r = wave.regions.addRegion({ start: s.start_ms / 1000, end: s.end_ms / 1000, drag: false, resize: false,
      color: withAlpha(s.kind === "missed" ? "#f79009" : "#d92d20", 0.35), content: `${s.type} ${s.kind === "missed" ? "FN" : "FP"}` });
    if (r.element) r.element.dataset.kind = s.kind;
  }
  ctx.onLeave(() => wave.ws.destroy());
  if (window.fathomTest) window.fathomTest.fileRegions = () => wave.regions.getRegions().map((r) => ({ start: r.start, end: r.end, kind: r.element?.dataset.kind }));
}

export async function renderEvaluation(view, id, ctx) {
  const e = await api(`/api/v1/evaluations/${id}`);
  const rows = e.status === "completed" ? await allRows(id) : [];
  const models = e.results?.models || [];
  const state = { sort: "score", dir: 1, model: models[0]?.reference || "" };
  const table = h("table", { class: "list", "data-list": "files" });
  const detail = h("section", { class: "file-detail", "data-testid": "file-detail" }, h("p", { class: "muted" }, "Open a row to see the file."));

  function drawTable() {
    const others = models.map((m) => m.reference).filter((r) => r !== state.model);
    if (state.sort.startsWith("diff:") && !others.includes(state.sort.slice(5))) state.sort = "score";
    const mine = rows.filter((r) => r.model === state.model);
    const key = { filename: (r) => r.filename, score: (r) => r.score ?? Infinity, errors: (r) => r.errors,
      ...Object.fromEntries(others.map((o) => [`diff:${o}`, (r) => r.differences?.[o] ?? Infinity])) }[state.sort];
    mine.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * state.dir);
    const th = (label, sortKey) => h("th", { class: "sortable", "data-sort": sortKey, onclick: () => {
      state.dir = state.sort === sortKey ? -state.dir : 1; state.sort = sortKey; drawTable();
    } }, label, state.sort === sortKey ? (state.dir > 0 ? " ▲" : " ▼") : "");
    table.replaceChildren(
      h("thead", {}, h("tr", {}, th("File", "filename"), th(e.kind === "stt" ? "WER %" : "F1", "score"), th("Errors", "errors"),
        others.map((o) => th(`Δ vs ${o}`, `diff:${o}`)), h("th", {}, "Status"))),
      h("tbody", {}, mine.map((r) => h("tr", { class: "clickable", "data-file": r.file_id, onclick: () => openRow(r) },
        h("td", {}, r.filename), h("td", { "data-col": "score" }, fmtNum(r.score, 4)), h("td", { "data-col": "errors" }, r.errors),
        others.map((o) => h("td", { "data-col": `diff:${o}` }, fmtNum(r.differences?.[o], 4))),
        h("td", {}, status(r.status), r.error_message ? h("div", { class: "error small" }, r.error_message) : "")))));
  }
  async function openRow(r) {
    try {
      if (e.kind === "stt") detail.replaceChildren(h("h3", {}, `${r.filename} · ${r.label}`), alignment(r.details));
      else await detectorFile(detail, e, r, ctx);
    } catch (err) { detail.replaceChildren(errorBox(err)); }
  }

  const modelSelect = h("select", { "data-testid": "model", onchange: () => { state.model = modelSelect.value; drawTable(); } },
    models.map((m) => h("option", { value: m.reference }, m.reference)));
  view.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/evaluations", "Evaluations"), ` / ${id.slice(0, 8)}`),
    h("h1", {}, `Evaluation ${id.slice(0, 8)}`),
    h("p", {}, status(e.status), ` · ${e.kind} · ${e.total_files} files · created ${fmtDate(e.created_at)}`),
    e.error_message ? errorBox(new Error(e.error_message)) : "",
    h("h2", {}, "Summary"),
    h("table", { class: "list", "data-list": "summary" },
      h("thead", {}, h("tr", {}, ["Model", "Headline", "Detail", "Counts", "Failed files"].map((t) => h("th", {}, t)))),
      h("tbody", {}, models.map((m) => h("tr", { "data-model": m.reference }, h("td", {}, m.reference),
        summaryCells(e.kind, m.summary).map((c) => h("td", {}, c)), h("td", {}, m.failed_files))))),
    h("div", { class: "comparisons" }, (e.results?.comparisons || []).map((c) => h("p", { class: "comparison", "data-testid": "comparison" },
      `${c.b} − ${c.a}: ${e.results.metric} ${fmtNum(c.difference, 4)} (95% interval ${fmtNum(c.ci_low, 4)} to ${fmtNum(c.ci_high, 4)}, ${c.files} files, ${c.resamples} resamples)`))),
    h("h2", {}, "Files"), models.length > 1 ? h("label", {}, "Model ", modelSelect) : "", table, detail);
  drawTable();
  if (window.fathomTest) window.fathomTest.ready = true;
}
