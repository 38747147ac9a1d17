import { get, request } from "../api.js";
import { clear, errorBox, field, fmt, h, locality } from "../ui.js";

// Chat with any model the signed-in key may use, streamed through /v1/chat/completions (the same path as
// any client); after each answer, its tokens and cost come from the ledger (/admin/audit).
export function render(main) {
  const model = h("select", { name: "model", "aria-label": "Model" });
  const system = h("textarea", { name: "system", rows: 2, placeholder: "Optional system prompt" });
  const prompt = h("textarea", { name: "prompt", rows: 3, required: true, placeholder: "Ask something… (Ctrl+Enter sends)" });
  const maxTokens = h("input", { name: "max_tokens", type: "number", min: 1, max: 8192, value: 128, size: 6 });
  const temperature = h("input", { name: "temperature", type: "number", min: 0, max: 2, step: "0.1", value: 0.7, size: 4 });
  const ttc = h("select", { name: "ttc" }, [["", "off"], ["best_of_n", "best of n"], ["self_consistency", "self-consistency"], ["self_refine", "self-refine"]].map(([v, l]) => h("option", { value: v }, l)));
  const n = h("input", { name: "ttc_n", type: "number", min: 2, max: 8, value: 3, size: 3 });
  const kb = h("select", { name: "knowledge_base" }, h("option", { value: "" }, "none"));
  const log = h("div", { class: "chat", "aria-live": "polite" });
  const send = h("button", { type: "submit" }, "Send");
  const stop = h("button", { type: "button", class: "secondary", disabled: true }, "Stop");
  const history = [];
  let controller = null;

  get("/v1/models").then((d) => clear(model, d.data.map((m) => h("option", { value: m.id }, m.id)))).catch((e) => log.append(errorBox(e)));
  get("/v1/knowledge_bases").then((d) => kb.append(...d.data.map((k) => h("option", { value: k.id }, k.name)))).catch(() => { kb.disabled = true; });
  prompt.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit(); });
  stop.addEventListener("click", () => controller && controller.abort());

  const form = h("form", { class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    history.push({ role: "user", content: text });
    prompt.value = "";
    log.append(h("div", { class: "msg user" }, text));
    const answer = h("div", { class: "msg assistant" });
    const meta = h("div", { class: "meta" }, "Waiting for the first token…");
    log.append(answer, meta);
    const body = {
      model: model.value,
      messages: [...(system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []), ...history],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: Number(maxTokens.value) || 128,
      temperature: Number(temperature.value),
    };
    if (ttc.value) body.ttc = { strategy: ttc.value, n: Number(n.value) || 3 };
    if (kb.value) body.knowledge_base = { id: kb.value };
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    const started = performance.now();
    let first = null;
    try {
      const response = await request("POST", "/v1/chat/completions", body, {}, controller.signal);
      if (!response.ok) {
        const err = await response.json().catch(() => ({}));
        throw new Error((err.error || {}).message || `HTTP ${response.status}`);
      }
      const requestId = response.headers.get("x-request-id");
      const route = response.headers.get("x-openmaas-route");
      let usage = null;
      let content = "";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of frame.split("\n")) {
            if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
            const chunk = JSON.parse(line.slice(6));
            if (chunk.error) throw new Error(chunk.error.message);
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) {
              if (first === null) first = performance.now() - started;
              content += delta.content;
              answer.textContent = content;
            }
            if (chunk.usage) usage = chunk.usage;
          }
        }
      }
      history.push({ role: "assistant", content });
      clear(meta, describe(route, usage, first, performance.now() - started, requestId));
      if (requestId) cost(requestId, meta);
    } catch (error) {
      history.pop();
      clear(meta, error.name === "AbortError" ? "Stopped." : errorBox(error));
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
  } },
    h("div", { class: "row" }, field("Model", model), field("Max tokens", maxTokens), field("Temperature", temperature), field("Test-time compute", ttc), field("Samples", n), field("Knowledge base", kb)),
    field("System", system),
    field("Message", prompt),
    h("div", { class: "row" }, send, stop, h("button", { type: "button", class: "secondary", onclick: () => { history.length = 0; clear(log); } }, "New chat")),
  );
  main.append(h("h1", {}, "Playground"), form, log);
  return () => controller && controller.abort();
}

function describe(route, usage, first, total, requestId) {
  return h("span", {},
    route ? h("span", {}, "Route: ", h("code", {}, route), " · ") : null,
    usage ? `${fmt.int(usage.prompt_tokens)} in / ${fmt.int(usage.completion_tokens)} out tokens · ` : "",
    first !== null ? `first token ${fmt.ms(first)} · ` : "",
    `${fmt.ms(total)} total`,
    requestId ? h("span", {}, " · ", h("a", { href: `#/requests/${encodeURIComponent(requestId)}` }, "data flow")) : null,
    h("span", { class: "cost" }, ""));
}

async function cost(requestId, meta) {
  try {
    const response = await request("GET", `/admin/audit/${encodeURIComponent(requestId)}`);
    if (!response.ok) return;
    const data = await response.json();
    const total = data.data.reduce((s, e) => s + e.cost_usd, 0);
    const where = data.data.map((e) => (e.route || {}).chosen_locality).filter(Boolean);
    const slot = meta.querySelector(".cost");
    if (slot) slot.replaceChildren(` · cost ${fmt.usd(total)} `, where.length ? locality(where[where.length - 1]) : "");
  } catch { /* the answer stands without its cost */ }
}
