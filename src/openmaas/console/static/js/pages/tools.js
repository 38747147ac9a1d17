import { get, query } from "../api.js";
import { badge, clear, empty, errorBox, fmt, h, statusBadge, table, time } from "../ui.js";

export function render(main) {
  const servers = h("div", { "aria-live": "polite" });
  const calls = h("div");
  main.append(h("h1", {}, "MCP tools and agent runs"), h("h2", {}, "Tool servers"), servers, h("h2", {}, "Recent tool calls"), calls);
  get("/v1/mcp/servers").then((data) => {
    const rows = data.data || [];
    clear(servers, rows.length ? table([
      ["Server", (s) => h("strong", {}, s.name)],
      ["Transport", (s) => s.transport || "–"],
      ["Where", (s) => badge(s.locality || "–", s.locality || "")],
      ["State", (s) => badge(s.state || "–", ["ready", "running"].includes(s.state) ? "ok" : "bad")],
      ["Tools", (s) => (s.tools || []).map((t) => (typeof t === "string" ? t : t.name)).join(", ") || "–", { wrap: true }],
      ["Starts", (s) => fmt.int(s.starts), { num: true }],
      ["Last error", (s) => s.error || "", { wrap: true }],
    ], rows, "Tool servers") : empty("No MCP servers are configured (settings: mcp.servers)."));
  }).catch((error) => clear(servers, errorBox(error)));
  const start = Math.floor(Date.now() / 1000 - 7 * 86400);
  get(`/admin/requests${query({ endpoint: "tool", start, limit: 50 })}`).then((data) => {
    clear(calls, data.data.length ? table([
      ["Time", (r) => time(r.created_at)],
      ["Request (agent run)", (r) => h("a", { href: `#/requests/${encodeURIComponent(r.request_id)}` }, r.request_id)],
      ["Tool", (r) => r.model],
      ["Server", (r) => r.deployment || "–"],
      ["Status", (r) => statusBadge(r.status)],
      ["Arguments", (r) => r.privacy || "–"],
      ["Cost", (r) => fmt.usd(r.cost_usd), { num: true }],
      ["Took", (r) => fmt.ms(r.latency_ms), { num: true }],
    ], data.data, "Tool calls") : empty("No tool calls in the last 7 days. Agents call tools through /mcp or a Responses request with an mcp tool."));
  }).catch((error) => clear(calls, errorBox(error)));
  return null;
}
