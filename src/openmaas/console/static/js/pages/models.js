import { get } from "../api.js";
import { badge, clear, empty, errorBox, fmt, h, locality, table } from "../ui.js";

const STATE = { closed: "ok", half_open: "warn", open: "bad" };

export function render(main) {
  const out = h("div", { "aria-live": "polite" });
  main.append(h("h1", {}, "Models"), h("p", { class: "muted" }, "Deployments and aliases, with their circuit breakers, requests in flight, recent latency (EWMA) and local engines' slots. Refreshed every 5 s."), out);
  const load = async () => {
    try {
      show(out, await get("/admin/models"));
    } catch (error) {
      clear(out, errorBox(error));
    }
  };
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}

function show(out, data) {
  if (!data.data.length) return clear(out, empty("No models are available to this key."));
  const price = (p) => (p.input_per_mtok || p.output_per_mtok ? `${fmt.usd(p.input_per_mtok)} / ${fmt.usd(p.output_per_mtok)}` : "free");
  clear(
    out,
    table([
      ["Deployment", (d) => h("strong", {}, d.name)],
      ["Where", (d) => locality(d.locality)],
      ["Backend", (d) => `${d.backend} · ${d.upstream_model}`],
      ["Aliases", (d) => d.aliases.join(", ") || "–"],
      ["Price in / out per 1M tokens", (d) => price(d.pricing)],
      ["Capabilities", (d) => Object.entries(d.capabilities).filter(([, v]) => v === true).map(([k]) => k).join(", "), { wrap: true }],
      ["Context", (d) => fmt.int(d.context_length), { num: true }],
      ["Circuit", (d) => (d.health ? badge(d.health.state, STATE[d.health.state] || "") : "–")],
      ["In flight", (d) => fmt.int(d.health ? d.health.in_flight : null), { num: true }],
      ["Latency", (d) => fmt.ms(d.health ? d.health.latency_ms : null), { num: true }],
      ["Engine slots", (d) => (d.engines.length ? d.engines.map((e) => `${e.label}: ${e.busy}/${e.slots} busy${e.queued ? `, ${e.queued} queued` : ""}`).join("; ") : "–"), { wrap: true }],
    ], data.data, "Deployments"),
    h("h2", {}, "Aliases"),
    Object.keys(data.aliases).length
      ? table([["Alias", ([a]) => a], ["Targets, in order", ([, t]) => t.join(" → ")]], Object.entries(data.aliases), "Aliases")
      : empty("No aliases."),
  );
}
