// A registered model: its versions with metrics and data, its aliases with their history, and a
// rollback that asks for a reason.

import { api } from "./api.js";
import { errorBox, fmtDate, fmtNum, h, link } from "./dom.js";

const HEADLINE = ["event_f1", "f1_score", "macro_f1_score", "word_error_rate", "character_error_rate", "wer", "cer"];

function headline(metrics) {
  const shown = HEADLINE.filter((k) => typeof metrics?.[k] === "number");
  return shown.length ? shown.map((k) => `${k} ${fmtNum(metrics[k], 4)}`).join(" · ") : "–";
}

export async function renderRegistryModel(view, name, ctx) {
  const enc = encodeURIComponent(name);
  const [model, versions] = await Promise.all([
    api(`/api/v1/registry/models/${enc}`), api(`/api/v1/registry/models/${enc}/versions`, { params: { page_size: 100 } })]);
  const aliases = Object.entries(model.aliases || {});
  const histories = await Promise.all(aliases.map(([alias]) => api(`/api/v1/registry/models/${enc}/aliases/${encodeURIComponent(alias)}/history`)));
  const message = h("div", { class: "message", role: "status" });

  async function rollback(alias) {
    const reason = window.prompt(`Roll ${alias} back to the version it named before. Reason (kept in the alias's history):`);
    if (reason === null) return;
    if (!reason.trim()) { message.replaceChildren(errorBox(new Error("A rollback needs a reason."))); return; }
    try {
      const moved = await api(`/api/v1/registry/models/${enc}/aliases/${encodeURIComponent(alias)}/rollback`, { method: "POST", body: { reason } });
      message.textContent = `${alias} now names version ${moved.version}.`;
      ctx.navigate(location.pathname);
    } catch (err) { message.replaceChildren(errorBox(err)); }
  }

  view.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/models", "Registered models"), ` / ${name}`),
    h("h1", {}, name),
    h("p", {}, `${model.kind} · latest version ${model.latest_version} · created ${fmtDate(model.created_at)}`),
    model.description ? h("p", {}, model.description) : "",
    h("h2", {}, "Aliases"), message,
    aliases.length ? h("div", { class: "aliases" }, aliases.map(([alias, version], i) => h("section", { "data-alias": alias },
      h("h3", {}, `${alias} → version `, h("span", { "data-testid": `alias-${alias}` }, version ?? "–"),
        " ", h("button", { "data-action": "rollback", onclick: () => rollback(alias) }, "Roll back…")),
      h("table", { class: "list", "data-list": `history-${alias}` },
        h("thead", {}, h("tr", {}, ["When", "Action", "Version", "From", "Reason", "Forced"].map((t) => h("th", {}, t)))),
        h("tbody", {}, [...histories[i].events].reverse().map((e) => h("tr", {},
          h("td", {}, fmtDate(e.set_at)), h("td", {}, e.action), h("td", {}, e.version ?? "–"), h("td", {}, e.previous_version ?? "–"),
          h("td", {}, e.reason || ""), h("td", {}, e.forced ? "yes" : "")))))))) : h("p", { class: "muted" }, "No alias yet."),
    h("h2", {}, `Versions (${versions.total})`),
    h("table", { class: "list", "data-list": "versions" },
      h("thead", {}, h("tr", {}, ["Version", "Metrics", "Data", "Training job", "Created", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, versions.items.map((v) => h("tr", { "data-version": v.version },
        h("td", {}, `v${v.version}`), h("td", { "data-testid": `metrics-${v.version}` }, headline(v.metrics)),
        h("td", { class: "small mono" }, Object.entries(v.data || {}).map(([k, x]) => `${k}: ${typeof x === "object" ? JSON.stringify(x) : x}`).join("\n")),
        h("td", {}, v.training_job_id ? link(`/ui/training-jobs/${v.training_job_id}`, v.training_job_id.slice(0, 8)) : "–"),
        h("td", {}, fmtDate(v.created_at)), h("td", {}, v.is_archived ? "archived" : ""))))));
  if (window.fathomTest) window.fathomTest.ready = true;
}
