import { get, query } from "../api.js";
import { rangeAndFilters } from "../controls.js";
import { badge, clear, empty, errorBox, field, fmt, h, locality, statusBadge, table, time } from "../ui.js";

export function render(main, ctx) {
  if (ctx.args[0]) return flow(main, ctx.args[0]);
  const out = h("div", { "aria-live": "polite" });
  const status = h("select", { name: "status" }, ["", "ok", "error"].map((v) => h("option", { value: v }, v || "any")));
  const pages = [];
  let base = {};
  const load = async (cursor) => {
    try {
      const data = await get(`/admin/requests${query({ ...base, status: status.value, cursor, limit: 50 })}`);
      show(out, data, pages, load);
    } catch (error) {
      clear(out, errorBox(error));
    }
  };
  const controls = rangeAndFilters(ctx.session, (p) => { base = p; pages.length = 0; load(null); }, { range: "7d" });
  controls.form.insertBefore(field("Status", status), controls.form.lastChild);
  const lookup = h("input", { name: "request_id", placeholder: "req_… or x-request-id", size: 28 });
  main.append(
    h("h1", {}, "Requests"),
    h("form", { class: "row panel", onsubmit: (e) => { e.preventDefault(); if (lookup.value.trim()) window.location.hash = `#/requests/${encodeURIComponent(lookup.value.trim())}`; } },
      field("Open a request id", lookup), h("button", { type: "submit" }, "Open")),
    controls.form,
    out,
  );
  base = controls.params();
  load(null);
  return null;
}

function show(out, data, pages, load) {
  if (!data.data.length) return clear(out, empty("No requests match. Widen the range or clear a filter."));
  const link = (r) => h("a", { href: `#/requests/${encodeURIComponent(r.request_id)}` }, r.request_id);
  clear(
    out,
    table([
      ["Time", (r) => time(r.created_at)],
      ["Request", link],
      ["Status", (r) => statusBadge(r.status)],
      ["Model", (r) => r.model],
      ["Deployment", (r) => r.deployment || "–"],
      ["Where", (r) => locality(r.locality)],
      ["Route reason", (r) => r.route_reason || "–", { wrap: true }],
      ["Privacy", (r) => r.privacy ? badge(r.privacy, r.privacy === "public" ? "" : "warn") : "–"],
      ["Degraded", (r) => (r.degraded ? badge("degraded", "warn") : "")],
      ["Tokens", (r) => fmt.int(r.prompt_tokens + r.completion_tokens), { num: true }],
      ["Cost", (r) => fmt.usd(r.cost_usd), { num: true }],
      ["Latency", (r) => fmt.ms(r.latency_ms), { num: true }],
    ], data.data, "Requests"),
    h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: !pages.length, onclick: () => { pages.pop(); load(pages.length ? pages[pages.length - 1] : null); } }, "← Newer"),
      h("button", { type: "button", class: "secondary", disabled: !data.next, onclick: () => { pages.push(data.next); load(data.next); } }, "Older →")),
  );
}

// The data-flow view: where one request's data went and why.
async function flow(main, id) {
  main.append(h("p", {}, h("a", { href: "#/requests" }, "← All requests")), h("h1", {}, "Request ", h("span", { class: "mono" }, id)));
  let data;
  try {
    data = await get(`/admin/audit/${encodeURIComponent(id)}`);
  } catch (error) {
    main.append(errorBox(error, "Request ids are in each response's x-request-id header and in the Requests log."));
    return;
  }
  main.append(h("p", { class: "muted" }, data.summary));
  data.data.forEach((event, i) => main.append(step(event, i + 1)));
}

function step(e, n) {
  const route = e.route || {};
  const privacy = route.privacy || {};
  const tool = route.kind === "tool_call";
  const where = tool ? route.arguments_went_to || [] : route.data_went_to || [];
  const node = (label, cls) => h("span", { class: `node ${cls || ""}` }, label);
  const parts = [
    h("h2", {}, `${n}. ${tool ? "Tool call" : "Model call"} — `, h("span", { class: "mono" }, e.model), " ", statusBadge(e.status), e.error_code ? ` ${e.error_code}` : "", e.degraded ? badge("degraded", "warn") : ""),
    h("div", { class: "flow", "aria-label": "Where the data went" },
      node("client"), h("span", { class: "arrow" }, "→"), node("gateway"), h("span", { class: "arrow" }, "→"),
      where.length ? where.map((w) => node(w, route.chosen_locality || "")) : node(tool ? "not sent" : "nowhere")),
    h("dl", { class: "row" },
      h("div", {}, h("dt", { class: "muted" }, "Time"), h("dd", {}, time(e.created_at))),
      h("div", {}, h("dt", { class: "muted" }, "Privacy"), h("dd", {}, privacy.class || "–", privacy.entities && privacy.entities.length ? ` (${privacy.entities.join(", ")})` : "", privacy.categories && privacy.categories.length ? ` [${privacy.categories.join(", ")}]` : "")),
      h("div", {}, h("dt", { class: "muted" }, "Policy"), h("dd", {}, route.policy || "–", route.masked ? " · masked before the cloud" : "")),
      h("div", {}, h("dt", { class: "muted" }, "Served by"), h("dd", {}, e.deployment || "–", " ", locality(route.chosen_locality))),
      h("div", {}, h("dt", { class: "muted" }, "Tokens"), h("dd", {}, `${fmt.int(e.prompt_tokens)} in${e.cached_tokens ? ` (${fmt.int(e.cached_tokens)} cached)` : ""} / ${fmt.int(e.completion_tokens)} out`)),
      h("div", {}, h("dt", { class: "muted" }, "Cost"), h("dd", {}, fmt.usd(e.cost_usd))),
      tool && route.step !== undefined && route.step !== null ? h("div", {}, h("dt", { class: "muted" }, "Agent step"), h("dd", {}, `step ${route.step} (${route.surface || "-"})`)) : null,
      tool ? h("div", {}, h("dt", { class: "muted" }, "Result"), h("dd", {}, route.result_privacy || "–")) : null,
      route.difficulty !== undefined && route.difficulty !== null ? h("div", {}, h("dt", { class: "muted" }, "Difficulty"), h("dd", {}, `${route.difficulty} · prefer ${route.prefer || "–"}`)) : null,
    ),
    e.route_reason ? h("p", { class: "muted" }, "Route: ", h("span", { class: "mono" }, e.route_reason)) : null,
  ];
  if (route.candidates && route.candidates.length) {
    parts.push(h("h3", {}, "Candidates"), table([
      ["", (c) => (c.kept ? badge("kept", "ok") : badge("dropped", "bad"))],
      ["Deployment", (c) => c.name],
      ["Where", (c) => locality(c.locality)],
      ["Role", (c) => c.role],
      ["Reason", (c) => c.reason, { wrap: true }],
    ], route.candidates, "Candidates"));
  }
  if (route.attempts && route.attempts.length) {
    parts.push(h("h3", {}, "Attempts, retries and fallbacks"), table([
      ["#", (a) => String(route.attempts.indexOf(a) + 1)],
      ["Deployment", (a) => a.deployment],
      ["Outcome", (a) => a.outcome],
      ["Time", (a) => fmt.ms(a.ms), { num: true }],
      ["Masked", (a) => (a.masked ? "yes" : "")],
      ["Placement", (a) => a.placement || ""],
    ], route.attempts, "Attempts"));
  }
  if (route.ttc) {
    parts.push(h("h3", {}, `Test-time compute: ${route.ttc.strategy}`), table([
      ["#", (c) => String(route.ttc.calls.indexOf(c) + 1)],
      ["Role", (c) => c.role],
      ["Deployment", (c) => c.deployment],
      ["Score", (c) => (c.score === null || c.score === undefined ? "" : String(c.score))],
      ["", (c) => (c.chosen ? badge("chosen", "ok") : "")],
      ["Tokens in / out", (c) => `${fmt.int(c.prompt_tokens)} / ${fmt.int(c.completion_tokens)}`, { num: true }],
      ["Cost", (c) => fmt.usd(c.cost_usd), { num: true }],
    ], route.ttc.calls, "Test-time compute calls"));
  }
  if (route.error) parts.push(h("p", { class: "error" }, route.error));
  return h("section", { class: "panel" }, parts);
}
