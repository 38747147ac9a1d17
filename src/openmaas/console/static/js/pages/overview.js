import { get, query } from "../api.js";
import { rangeAndFilters } from "../controls.js";
import { chart, clear, empty, errorBox, fmt, h, table } from "../ui.js";

export function render(main, { session }) {
  const body = h("div", { "aria-live": "polite" });
  const auto = h("input", { type: "checkbox", checked: true, id: "auto-refresh" });
  let current = null;
  const load = async (params) => {
    current = params;
    try {
      draw(body, await get(`/admin/overview${query(params)}`), session);
    } catch (error) {
      clear(body, errorBox(error, "Check the filters, or sign in again."));
    }
  };
  const controls = rangeAndFilters(session, load);
  main.append(
    h("h1", {}, "Overview"),
    controls.form,
    h("label", { class: "muted" }, auto, " Refresh every 5 s"),
    body,
  );
  load(controls.params());
  const timer = setInterval(() => { if (auto.checked && current) load({ ...controls.params() }); }, 5000);
  return () => clearInterval(timer);
}

function draw(body, data, session) {
  const t = data.totals;
  if (!t.requests) {
    clear(body, empty("No requests in this range yet. Send one (the Playground, or curl /v1/chat/completions) and it appears here within seconds."));
    return;
  }
  const cards = [
    ["Requests", fmt.int(t.requests)],
    ["Tokens", fmt.int(t.prompt_tokens + t.completion_tokens)],
    ["Cost", fmt.usd(t.cost_usd)],
    ["Error rate", fmt.pct(t.error_rate)],
    ["Latency p50", fmt.ms(t.latency_ms.p50)],
    ["Latency p95", fmt.ms(t.latency_ms.p95)],
    ["TTFT p50", fmt.ms(t.ttft_ms.p50)],
    ["TTFT p95", fmt.ms(t.ttft_ms.p95)],
  ];
  const s = data.series;
  const times = s.map((p) => p.t);
  const per = data.grain === "hour" ? "per hour" : "per day (UTC)";
  const charts = h(
    "div",
    { class: "charts" },
    chart(`Requests ${per}`, times, [["requests", s.map((p) => p.requests)], ["errors", s.map((p) => p.errors)]], fmt.int, { whole: true, floor: 1 }),
    chart(`Tokens ${per}`, times, [["prompt", s.map((p) => p.prompt_tokens)], ["completion", s.map((p) => p.completion_tokens)]], fmt.int, { whole: true, floor: 1 }),
    chart(`Cost ${per} (USD)`, times, [["cost", s.map((p) => p.cost_usd)]], fmt.usd, { floor: 0.01, axis: (v) => `$${Number(v.toPrecision(2))}` }),
    chart("Latency", times, [["p50", s.map((p) => p.latency_ms.p50)], ["p95", s.map((p) => p.latency_ms.p95)], ["p99", s.map((p) => p.latency_ms.p99)]], fmt.ms, { floor: 100 }),
    chart("Time to first token", times, [["p50", s.map((p) => p.ttft_ms.p50)], ["p95", s.map((p) => p.ttft_ms.p95)]], fmt.ms, { floor: 100 }),
    chart("Error rate", times, [["errors", s.map((p) => p.error_rate)]], fmt.pct, { floor: 0.05 }),
  );
  const breakdown = (title, rows, linkKey) =>
    h("div", {}, h("h2", {}, title), rows.length ? table([
      [linkKey, (r) => r.name ? `${r.name} (${r.value})` : r.value || "(none)"],
      ["Requests", (r) => fmt.int(r.requests), { num: true }],
      ["Errors", (r) => fmt.int(r.errors), { num: true }],
      ["Tokens", (r) => fmt.int(r.tokens), { num: true }],
      ["Cost", (r) => fmt.usd(r.cost_usd), { num: true }],
      ["Mean latency", (r) => fmt.ms(r.latency_ms_mean), { num: true }],
    ], rows, title) : empty("None."));
  clear(
    body,
    h("div", { class: "cards" }, cards.map(([label, value]) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value)))),
    h("p", { class: "muted" }, `Percentiles come from the ledger's latency histograms (within one bucket's width). ${data.grain === "day" ? "Ranges over 3 days are shown per UTC day." : ""}`),
    charts,
    breakdown("By model", data.by.model, "Model"),
    breakdown("By deployment", data.by.deployment, "Deployment"),
    session.scope === "tenant" ? null : breakdown("By tenant", data.by.tenant, "Tenant"),
    breakdown("By key", data.by.key, "Key"),
  );
}
