import { api, get, upload } from "../api.js";
import { badge, clear, empty, errorBox, field, fmt, h, table, time } from "../ui.js";

export function render(main, { session, args }) {
  main.append(h("h1", {}, "Knowledge bases"));
  if (session.scope === "admin") main.append(h("p", { class: "notice" }, "Knowledge bases belong to tenants: signed in as admin you see the keyless (open-mode) ones. Sign in with a tenant's key to manage that tenant's."));
  const out = h("div", { "aria-live": "polite" });
  main.append(out);
  (args[0] ? one(out, args[0]) : list(out)).catch((error) => clear(out, errorBox(error, error.code === "knowledge_bases_disabled" ? "Install the 'rag' extra and enable rag in the settings." : null)));
  return null;
}

async function list(out) {
  const data = await get("/v1/knowledge_bases");
  const name = h("input", { name: "kb_name", required: true, size: 18 });
  const description = h("input", { name: "kb_description", size: 30 });
  const problem = h("div");
  const create = h("form", { class: "panel row", "aria-label": "Create a knowledge base", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const kb = await api("POST", "/v1/knowledge_bases", { name: name.value, description: description.value });
      window.location.hash = `#/kbs/${kb.id}`;
    } catch (error) { clear(problem, errorBox(error)); }
  } }, field("Name", name), field("Description", description), h("button", { type: "submit" }, "Create"));
  clear(out, create, problem, data.data.length ? table([
    ["Name", (kb) => h("a", { href: `#/kbs/${kb.id}` }, kb.name)],
    ["Description", (kb) => kb.description || "–", { wrap: true }],
    ["Embedding model", (kb) => kb.embedding_model],
    ["Documents", (kb) => fmt.int(kb.documents ?? kb.document_count), { num: true }],
    ["Created", (kb) => time(kb.created_at)],
  ], data.data, "Knowledge bases") : empty("No knowledge bases yet: create one, then upload documents."));
}

async function one(out, id) {
  const kb = await get(`/v1/knowledge_bases/${encodeURIComponent(id)}`);
  const docs = h("div");
  const files = h("input", { type: "file", name: "file", multiple: true, accept: ".txt,.md,.markdown,.html,.htm,.pdf,.csv,.json,text/*" });
  const bar = h("div");
  const progress = h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0, "aria-label": "Upload progress" }, bar);
  const uploadState = h("span", { class: "muted", "aria-live": "polite" });
  const q = h("input", { name: "query", required: true, size: 40, placeholder: "Ask the documents…" });
  const mode = h("select", { name: "mode" }, ["hybrid", "dense", "sparse"].map((m) => h("option", { value: m }, m)));
  const results = h("div", { "aria-live": "polite" });
  const refresh = async () => {
    const d = await get(`/v1/knowledge_bases/${encodeURIComponent(id)}/documents`);
    clear(docs, d.data.length ? table([
      ["Document", (doc) => doc.filename],
      ["Title", (doc) => doc.title || "–", { wrap: true }],
      ["Chunks", (doc) => fmt.int(doc.chunks ?? doc.chunk_count), { num: true }],
      ["Tokens", (doc) => fmt.int(doc.tokens), { num: true }],
      ["Added", (doc) => time(doc.created_at)],
      ["", (doc) => h("button", { type: "button", class: "danger", onclick: async () => { await api("DELETE", `/v1/knowledge_bases/${id}/documents/${doc.id}`); refresh(); } }, "Delete")],
    ], d.data, "Documents") : empty("No documents yet: upload text, Markdown, HTML or PDF files."));
  };
  const send = async (e) => {
    e.preventDefault();
    if (!files.files.length) return;
    uploadState.textContent = "Uploading…";
    try {
      const r = await upload(`/v1/knowledge_bases/${encodeURIComponent(id)}/documents`, files.files, (f) => {
        bar.style.width = `${Math.round(f * 100)}%`;
        progress.setAttribute("aria-valuenow", String(Math.round(f * 100)));
        if (f >= 1) uploadState.textContent = "Uploaded; indexing…";
      });
      uploadState.textContent = `Added ${r.data.length} document(s)${r.errors.length ? `; ${r.errors.length} failed: ${r.errors.map((x) => x.filename).join(", ")}` : ""}.`;
      files.value = "";
      refresh();
    } catch (error) {
      uploadState.textContent = "";
      clear(results, errorBox(error));
    }
  };
  const search = async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", `/v1/knowledge_bases/${encodeURIComponent(id)}/search`, { query: q.value, mode: mode.value, top_k: 5 });
      const kinds = [...new Set(r.data.flatMap((x) => Object.keys(x.scores || {})))];
      clear(results, r.data.length ? table([
        ["#", (x) => String(x.rank)],
        ["Fused score", (x) => x.score.toFixed(4), { num: true }],
        ...kinds.map((k) => [`${k} rank`, (x) => (x.scores[k] ? `${x.scores[k].rank} (${x.scores[k].score.toFixed(3)})` : "–"), { num: true }]),
        ["Document", (x) => `${x.filename}${x.heading ? ` › ${x.heading}` : ""}`],
        ["Text", (x) => (x.text.length > 240 ? `${x.text.slice(0, 240)}…` : x.text), { wrap: true }],
      ], r.data, "Search results") : empty("Nothing matched."));
    } catch (error) { clear(results, errorBox(error)); }
  };
  clear(out,
    h("p", {}, h("a", { href: "#/kbs" }, "← All knowledge bases")),
    h("h2", {}, kb.name, " ", badge(kb.embedding_model)),
    kb.description ? h("p", { class: "muted" }, kb.description) : null,
    h("form", { class: "panel row", "aria-label": "Upload documents", onsubmit: send }, field("Files", files), h("button", { type: "submit" }, "Upload"), progress, uploadState),
    docs,
    h("h2", {}, "Search"),
    h("form", { class: "panel row", role: "search", onsubmit: search }, field("Query", q), field("Retriever", mode), h("button", { type: "submit" }, "Search")),
    results);
  await refresh();
}
