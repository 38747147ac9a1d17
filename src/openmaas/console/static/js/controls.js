import { field, h } from "./ui.js";

const RANGES = [["1h", 3600], ["24h", 86400], ["7d", 7 * 86400], ["30d", 30 * 86400], ["90d", 90 * 86400]];

// A date range (presets or custom dates in the viewer's time zone) and the filters; onChange(params).
export function rangeAndFilters(session, onChange, opts = {}) {
  const preset = h("select", { name: "range" }, RANGES.map(([label, s]) => h("option", { value: s, selected: label === (opts.range || "24h") }, `Last ${label}`)), h("option", { value: "custom" }, "Custom dates"));
  const from = h("input", { type: "date", name: "from", hidden: true, "aria-label": "From date" });
  const to = h("input", { type: "date", name: "to", hidden: true, "aria-label": "To date" });
  const inputs = {};
  const names = ["model", "deployment", ...(session.scope === "tenant" ? [] : ["tenant"]), "key", ...(opts.extra || [])];
  for (const name of names) inputs[name] = h("input", { name, placeholder: "any", size: 14 });
  const params = () => {
    const p = {};
    if (preset.value === "custom") {
      if (from.value) p.start = new Date(`${from.value}T00:00:00`).getTime() / 1000;
      if (to.value) p.end = new Date(`${to.value}T00:00:00`).getTime() / 1000 + 86400;
    } else {
      const now = Date.now() / 1000;
      p.start = Math.floor(now - Number(preset.value));
    }
    for (const [name, input] of Object.entries(inputs)) if (input.value.trim()) p[name] = input.value.trim();
    return p;
  };
  preset.addEventListener("change", () => {
    const custom = preset.value === "custom";
    from.hidden = !custom;
    to.hidden = !custom;
    if (!custom) onChange(params());
  });
  const form = h(
    "form",
    { class: "row panel", role: "search", onsubmit: (e) => { e.preventDefault(); onChange(params()); } },
    field("Range", preset),
    from,
    to,
    Object.entries(inputs).map(([name, input]) => field(name[0].toUpperCase() + name.slice(1), input)),
    h("button", { type: "submit" }, "Apply"),
  );
  return { form, params };
}
