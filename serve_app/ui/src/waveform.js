// One waveform for every page that shows audio: server-computed peaks (never a decode in the
// browser), the audio streamed by the <audio> element with Range requests, regions, a timeline
// and a minimap. Long files open on their first minute; the minimap shows the whole. The
// timeline is drawn here, for the visible span only: wavesurfer's Timeline plugin lays out a
// notch for every interval of the whole file at each zoom step (200 ms a step on an hour).

import WaveSurfer from "wavesurfer.js";
import MinimapPlugin from "wavesurfer.js/plugins/minimap.esm.js";
import RegionsPlugin from "wavesurfer.js/plugins/regions.esm.js";
import { api } from "./api.js";
import { h } from "./dom.js";

export const MAX_PEAK_VALUES = 200_000; // about 1 MB of JSON for any length of audio
const FULL_RESOLUTION_PPS = 200; // the stored peaks: one min/max pair every 5 ms
const FIRST_VIEW_S = 60;

/** Peaks for the whole file at the finest zoom whose payload stays under MAX_PEAK_VALUES. */
export async function loadPeaks(peaksPath, durationMs) {
  const seconds = Math.max(durationMs / 1000, 0.001);
  const pps = Math.max(0.5, Math.min(FULL_RESOLUTION_PPS, Math.floor(MAX_PEAK_VALUES / 2 / seconds)));
  const peaks = await api(peaksPath, { params: { pixels_per_second: pps } });
  const values = new Float32Array(peaks.data.length);
  for (let i = 0; i < values.length; i++) values[i] = peaks.data[i] / peaks.scale;
  return { values, durationS: peaks.duration_ms / 1000, pixelsPerSecond: pps };
}

/**
 * Build the waveform in ``container``: returns {ws, regions, audio, zoomTo, visible}.
 * ``audioUrl`` is a short-lived same-origin (or S3 presigned) URL that answers Range requests.
 */
export function createWaveform(container, { values, durationS }, audioUrl, { onZoom } = {}) {
  const audio = h("audio", { preload: "metadata", src: audioUrl, crossorigin: "anonymous" });
  const minimapBox = h("div", { class: "minimap" });
  const waveBox = h("div", { class: "wave" });
  const timelineBox = h("canvas", { class: "timeline", height: 20 });
  container.replaceChildren(minimapBox, waveBox, timelineBox, audio);
  const regions = RegionsPlugin.create();
  const ws = WaveSurfer.create({
    container: waveBox,
    media: audio,
    peaks: [values],
    duration: durationS,
    height: 140,
    waveColor: "#6b7a99",
    progressColor: "#2f3b59",
    cursorColor: "#d62728",
    normalize: true,
    autoScroll: true,
    autoCenter: false,
    plugins: [
      regions,
      MinimapPlugin.create({ container: minimapBox, height: 36, waveColor: "#b8c2d9", progressColor: "#6b7a99", overlayColor: "rgba(47, 59, 89, 0.18)" }),
    ],
  });
  const fitPps = () => waveBox.clientWidth / durationS;
  const zoomTo = (pps) => {
    const p = Math.max(fitPps(), Math.min(2000, pps));
    ws.zoom(p);
    if (onZoom) onZoom(p);
    return p;
  };
  const visible = () => {
    // The drawn width, whatever zoom and layout made it: the wrapper spans the whole file.
    const pps = ws.getWrapper().getBoundingClientRect().width / durationS || fitPps();
    const start = ws.getScroll() / pps;
    return { start, end: Math.min(durationS, start + ws.getWidth() / pps), pps, left: ws.getWrapper().getBoundingClientRect().left + ws.getScroll() };
  };
  let pending = false;
  const drawTimeline = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; paintTimeline(timelineBox, visible(), ws.getWidth()); });
  };
  for (const event of ["ready", "redraw", "scroll", "zoom", "resize"]) ws.on(event, drawTimeline);
  ws.once("ready", () => { if (durationS > FIRST_VIEW_S) zoomTo(waveBox.clientWidth / FIRST_VIEW_S); });
  return { ws, regions, audio, zoomTo, visible, fitPps };
}

const STEPS_S = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

function label(t, step) {
  const m = Math.floor(t / 60), sec = t - m * 60;
  const digits = step < 0.1 ? 2 : step < 1 ? 1 : 0;
  return m ? `${m}:${sec.toFixed(digits).padStart(digits ? 3 + digits : 2, "0")}` : `${sec.toFixed(digits)}`;
}

/** Ticks of the visible span: a labelled one about every 90 px, four minor ones between. */
function paintTimeline(canvas, { start, end, pps }, width) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.style.width = `${width}px`;
  canvas.height = 20 * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, 20);
  const major = STEPS_S.find((s) => s * pps >= 90) || STEPS_S[STEPS_S.length - 1];
  const minor = major / 5;
  ctx.fillStyle = "#6b7280";
  ctx.strokeStyle = "#9aa3b5";
  ctx.font = "10px system-ui, sans-serif";
  for (let i = Math.floor(start / minor); i * minor <= end; i++) {
    const t = i * minor, x = Math.round((t - start) * pps) + 0.5;
    const isMajor = i % 5 === 0;
    ctx.beginPath();
    ctx.moveTo(x, 0);
    ctx.lineTo(x, isMajor ? 8 : 4);
    ctx.stroke();
    if (isMajor) ctx.fillText(label(t, major), x + 2, 17);
  }
}
