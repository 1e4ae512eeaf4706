// The router: one HTML page, a view per path under /ui/, history navigation without reloads.

import { api, auth } from "./api.js";
import { errorBox, h, link, root } from "./dom.js";
import { LISTS, renderList } from "./lists.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const whoami = document.getElementById("whoami");

/** Each route: a pattern over the path after /ui and the module that draws it. */
const ROUTES = [
  [/^\/inference-jobs\/([^/]+)\/files\/([^/]+)$/, (m) => import("./review.js").then((x) => x.renderReview(view, m[1], m[2], ctx))],
  [/^\/datasets\/([^/]+)\/audio\/([^/]+)$/, (m) => import("./annotate.js").then((x) => x.renderAnnotate(view, m[1], m[2], ctx))],
  [/^\/datasets\/([^/]+)$/, (m) => import("./dataset.js").then((x) => x.renderDataset(view, m[1], ctx))],
  [/^\/training-jobs\/([^/]+)$/, (m) => import("./training.js").then((x) => x.renderTrainingJob(view, m[1], ctx))],
  [/^\/custom-models\/([^/]+)$/, (m) => import("./training.js").then((x) => x.renderCustomModel(view, m[1], ctx))],
  [/^\/models\/([^/]+)$/, (m) => import("./registry.js").then((x) => x.renderRegistryModel(view, decodeURIComponent(m[1]), ctx))],
  [/^\/evaluations\/([^/]+)$/, (m) => import("./evaluation.js").then((x) => x.renderEvaluation(view, m[1], ctx))],
  [/^\/inference-jobs\/([^/]+)$/, (m) => import("./inference_job.js").then((x) => x.renderInferenceJob(view, m[1], ctx))],
  [/^\/transcribe$/, () => import("./transcribe.js").then((x) => x.renderTranscribe(view, ctx))],
  [/^\/([a-z-]+)$/, (m) => (LISTS[m[1]] ? renderList(view, m[1], navigate) : notFound())],
  [/^\/?$/, () => renderHome()],
];

let cleanup = null;
const ctx = {
  navigate,
  /** A view registers what to undo (listeners, players) when the next view replaces it. */
  onLeave(fn) { cleanup = fn; },
};

function notFound() {
  view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No page here. ", link("/ui/", "Home")));
}

function renderSignIn(message) {
  nav.replaceChildren();
  whoami.replaceChildren();
  const input = h("input", { type: "password", name: "api_key", autocomplete: "off", placeholder: "fth_…", size: 48, required: true });
  const form = h("form", { class: "signin", onsubmit: async (e) => {
    e.preventDefault();
    auth.signIn(input.value);
    try {
      await api("/api/v1/auth/api-keys", { params: {} });
    } catch (err) {
      if (err.status === 401) { renderSignIn("That key was not accepted."); return; }
      // 403: a key without the api-keys scope is still a key; let the pages say what it may read.
    }
    route();
  } },
  h("h1", {}, "Sign in"),
  h("p", {}, "Paste an API key. It stays in this tab only (sessionStorage) and is sent as X-API-Key."),
  message ? h("div", { class: "error", role: "alert" }, message) : null,
  input, " ", h("button", { type: "submit" }, "Sign in"));
  view.replaceChildren(form);
  input.focus();
}

function drawNav() {
  nav.replaceChildren(...Object.entries(LISTS).map(([name, spec]) => link(`/ui/${name}`, spec.title)), link("/ui/transcribe", "Transcribe"));
  whoami.replaceChildren(h("button", { class: "link", onclick: () => { auth.signOut(); route(); } }, "Sign out"));
}

function renderHome() {
  view.replaceChildren(h("h1", {}, "Fathom"),
    h("p", {}, "Artifact detection and custom speech-to-text on your Ray cluster."),
    h("ul", { class: "home" }, Object.entries(LISTS).map(([name, spec]) => h("li", {}, link(`/ui/${name}`, spec.title)))),
    h("p", { class: "muted" }, "The REST API: ", h("a", { href: `${root}/docs` }, "/docs"), "."));
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* the old view is gone either way */ } cleanup = null; }
  if (window.fathomTest) window.fathomTest.ready = false;
  if (!auth.key) { renderSignIn(); return; }
  drawNav();
  const path = location.pathname.slice(root.length).replace(/^\/ui/, "") || "/";
  for (const [pattern, draw] of ROUTES) {
    const m = path.match(pattern);
    if (m) {
      try { await draw(m); } catch (err) {
        if (err.status === 401) { renderSignIn("The key is no longer accepted; sign in again."); return; }
        view.replaceChildren(errorBox(err));
      }
      return;
    }
  }
  notFound();
}

export function navigate(url) {
  history.pushState(null, "", url.startsWith(root) ? url : `${root}${url}`);
  route();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
if (window.FATHOM_UI.testHooks) window.fathomTest = { ready: false };
route();
