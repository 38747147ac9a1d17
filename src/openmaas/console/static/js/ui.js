// DOM helpers (text nodes only: nothing from the server is ever parsed as HTML), formats and charts.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : integer.format(n)),
  num: (n) => (n === null || n === undefined ? "–" : decimal.format(n)),
  pct: (x) => (x === null || x === undefined ? "–" : percent.format(x)),
  usd(x) {
    if (x === null || x === undefined) return "–";
    const digits = x !== 0 && Math.abs(x) < 0.01 ? 6 : 2;
    return new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(x);
  },
  ms(x) {
    if (x === null || x === undefined) return "–";
    return x >= 1000 ? `${decimal.format(x / 1000)} s` : `${integer.format(x)} ms`;
  },
};

// A time in the viewer's time zone, with UTC on hover.
export function time(epochSeconds, opts = {}) {
  if (!epochSeconds) return h("span", {}, "–");
  const d = new Date(epochSeconds * 1000);
  const local = d.toLocaleString(undefined, opts.dateOnly ? { dateStyle: "medium" } : { dateStyle: "short", timeStyle: "medium" });
  return h("time", { datetime: d.toISOString(), title: `${d.toISOString().replace("T", " ").slice(0, 19)} UTC` }, local);
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function locality(value) {
  return value ? badge(value, value) : h("span", { class: "muted" }, "–");
}

export function statusBadge(status) {
  return badge(String(status), status >= 400 ? "bad" : "ok");
}

export function errorBox(error, hint) {
  return h("div", { class: "error", role: "alert" }, error.message || String(error), hint ? h("div", { class: "muted" }, hint) : null);
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

// A table: columns are [header, cell(row) → node|text, {num: true}].
export function table(columns, rows, caption) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", { class: "sr" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([name, , o]) => h("th", { class: o && o.num ? "num" : "", scope: "col" }, name)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", {}, columns.map(([, cell, o]) => h("td", { class: [o && o.num ? "num" : "", o && o.wrap ? "wrap" : ""].join(" ").trim() || null }, cell(row))))),
      ),
    ),
  );
}

export function field(label, input) {
  return h("label", {}, label, input);
}

const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];

// A time-series chart (uPlot, vendored): series are [label, values], ``unit`` formats values; ``opts.whole``:
// counts (whole-number ticks); ``opts.floor``: the least top of the y axis (an all-zero range stays readable);
// ``opts.axis``: a shorter formatter for the axis' ticks.
export function chart(title, times, series, unit, opts = {}) {
  const box = h("div", { class: "panel chart", role: "img", "aria-label": `${title} chart` }, h("h3", {}, title));
  if (!times.length) {
    box.append(empty("No requests in this range."));
    return box;
  }
  const colors = ["#1f5fbf", "#b42318", "#1b7f3b", "#a15c00", "#6941c6"];
  const width = () => Math.max(260, box.clientWidth - 28 || 400);
  const format = (v) => (v === null || v === undefined ? "–" : unit(v));
  const options = {
    width: 400,
    height: 200,
    series: [{}, ...series.map(([label], i) => ({ label, stroke: colors[i % colors.length], width: 2, value: (u, v) => format(v), spanGaps: true }))],
    axes: [{}, { values: (u, ticks) => ticks.map(opts.axis || format), size: 70, ...(opts.whole ? { incrs: WHOLE } : {}) }],
    scales: { y: { range: (u, min, max) => [0, Math.max(max || 0, opts.floor || 0) * 1.05 || 1] } },
    legend: { live: true },
  };
  requestAnimationFrame(() => {
    if (!window.uPlot) return;
    options.width = width();
    const plot = new window.uPlot(options, [times, ...series.map(([, v]) => v)], box);
    new ResizeObserver(() => plot.setSize({ width: width(), height: 200 })).observe(box);
  });
  return box;
}

export async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy";
  }
}
