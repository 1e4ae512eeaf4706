// One waveform for every page that shows audio: server-computed peaks (never a decode in the
// browser), the audio streamed by the <audio> element with Range requests, regions, a timeline
// and a minimap. Long files open on their first minute; the minimap shows the whole.

import WaveSurfer from "wavesurfer.js";
import MinimapPlugin from "wavesurfer.js/plugins/minimap.esm.js";
import RegionsPlugin from "wavesurfer.js/plugins/regions.esm.js";
import TimelinePlugin from "wavesurfer.js/plugins/timeline.esm.js";
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
  const timelineBox = h("div", { class: "timeline" });
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
      TimelinePlugin.create({ container: timelineBox, height: 18 }),
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
  ws.once("ready", () => { if (durationS > FIRST_VIEW_S) zoomTo(waveBox.clientWidth / FIRST_VIEW_S); });
  return { ws, regions, audio, zoomTo, visible, fitPps };
}
