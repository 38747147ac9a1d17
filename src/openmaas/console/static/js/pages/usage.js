import { request, query } from "../api.js";
import { clear, empty, errorBox, field, fmt, h, table } from "../ui.js";

const DIMENSIONS = ["tenant", "key", "model", "deployment", "day"];

// The same figures as `openmaas usage` and /admin/usage (it is that API).
export function render(main, { session }) {
  const boxes = DIMENSIONS.filter((d) => !(session.scope === "tenant" && d === "tenant")).map((d) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "group_by", value: d, checked: d === "model" || d === "day" }), ` ${d}`));
  const start = h("input", { type: "date", name: "start" });
  const end = h("input", { type: "date", name: "end" });
  const filters = {};
  for (const name of ["model", "deployment", ...(session.scope === "tenant" ? [] : ["tenant"]), "key"]) filters[name] = h("input", { name, placeholder: "any", size: 14 });
  const out = h("div", { "aria-live": "polite" });
  const params = (format) => ({
    group_by: boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value).join(","),
    start: start.value, end: end.value, format,
    ...Object.fromEntries(Object.entries(filters).map(([k, i]) => [k, i.value.trim()])),
  });
  const load = async () => {
    try {
      const response = await request("GET", `/admin/usage${query(params())}`);
      const data = await response.json();
      if (!response.ok) throw new Error((data.error || {}).message || `HTTP ${response.status}`);
      show(out, data);
    } catch (error) {
      clear(out, errorBox(error, "Dates are UTC days (inclusive); a tenant is its name or id."));
    }
  };
  const exportCsv = async () => {
    const response = await request("GET", `/admin/usage${query(params("csv"))}`);
    if (!response.ok) return clear(out, errorBox(new Error(`The export failed (HTTP ${response.status}).`)));
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: "usage.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  main.append(
    h("h1", {}, "Usage explorer"),
    h("form", { class: "panel", onsubmit: (e) => { e.preventDefault(); load(); } },
      h("fieldset", { class: "row" }, h("legend", {}, "Group by"), boxes),
      h("div", { class: "row" }, field("From (UTC day)", start), field("To (UTC day)", end),
        Object.entries(filters).map(([n, i]) => field(n, i)),
        h("button", { type: "submit" }, "Show"),
        h("button", { type: "button", class: "secondary", onclick: exportCsv }, "Export CSV"))),
    out,
  );
  load();
}

function show(out, data) {
  if (!data.data.length) return clear(out, empty("No usage for these filters. Widen the dates or clear a filter."));
  const dims = data.group_by.map((d) => [d, (r) => r[d] ?? "(none)"]);
  const totals = data.data.reduce((t, r) => ({ requests: t.requests + r.requests, tokens: t.tokens + r.total_tokens, cost: t.cost + r.cost_usd }), { requests: 0, tokens: 0, cost: 0 });
  clear(
    out,
    h("p", { class: "muted" }, `${fmt.int(data.data.length)} rows · ${fmt.int(totals.requests)} requests · ${fmt.int(totals.tokens)} tokens · ${fmt.usd(totals.cost)}`),
    table([
      ...dims,
      ["Requests", (r) => fmt.int(r.requests), { num: true }],
      ["Prompt tokens", (r) => fmt.int(r.prompt_tokens), { num: true }],
      ["Completion tokens", (r) => fmt.int(r.completion_tokens), { num: true }],
      ["Cost", (r) => fmt.usd(r.cost_usd), { num: true }],
      ["Errors", (r) => fmt.int(r.errors), { num: true }],
      ["Interrupted", (r) => fmt.int(r.interrupted), { num: true }],
    ], data.data, "Usage"),
  );
}
