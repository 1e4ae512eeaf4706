// The spectrogram toggle: the detector's log-mel bands of the visible window, fetched from the
// server (the browser never decodes the file) and redrawn as the view scrolls and zooms.

import { api } from "./api.js";
import { h } from "./dom.js";

// A perceptual ramp (dark blue → yellow) for bytes 0..255.
function colour(v) {
  const t = v / 255;
  const r = Math.round(255 * Math.min(1, Math.max(0, 1.8 * t - 0.5)));
  const g = Math.round(255 * Math.min(1, Math.max(0, 1.6 * t - 0.25)) * 0.95);
  const b = Math.round(255 * Math.min(1, Math.max(0.15, 0.6 + 0.8 * t - 1.6 * t * t)));
  return [r, g, b];
}
const RAMP = Array.from({ length: 256 }, (_, v) => colour(v));

export function attachSpectrogram(holder, wave, path) {
  const canvas = h("canvas", { class: "spectrogram", height: 96, hidden: true, "data-testid": "spectrogram" });
  holder.after(canvas);
  let on = false;
  let timer = null;
  let seq = 0;

  async function draw() {
    if (!on) return;
    const { start, end } = wave.visible();
    const width = Math.max(1, Math.round(canvas.clientWidth || holder.clientWidth));
    const mine = ++seq;
    const data = await api(path, { params: { start_ms: Math.floor(start * 1000), end_ms: Math.ceil(end * 1000), max_frames: Math.min(4000, width) } });
    if (mine !== seq || !on) return;
    const bytes = Uint8Array.from(atob(data.data), (c) => c.charCodeAt(0));
    canvas.width = width;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(width, canvas.height);
    const spanMs = Math.max(1, (end - start) * 1000);
    for (let x = 0; x < width; x++) {
      const f = Math.min(data.frames - 1, Math.floor(((x / width) * spanMs) / data.ms_per_frame));
      for (let y = 0; y < canvas.height; y++) {
        const band = Math.min(data.bands - 1, Math.floor(((canvas.height - 1 - y) / canvas.height) * data.bands));
        const v = f >= 0 ? bytes[f * data.bands + band] : 0;
        const [r, g, b] = RAMP[v];
        const i = (y * width + x) * 4;
        img.data[i] = r; img.data[i + 1] = g; img.data[i + 2] = b; img.data[i + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    canvas.dataset.frames = data.frames;
  }
  const schedule = () => { clearTimeout(timer); timer = setTimeout(() => draw().catch(() => {}), 120); };
  const offs = [wave.ws.on("scroll", schedule), wave.ws.on("zoom", schedule)];
  return {
    toggle() {
      on = !on;
      canvas.hidden = !on;
      if (on) draw().catch(() => {});
    },
    destroy() { offs.forEach((off) => off()); },
  };
}
