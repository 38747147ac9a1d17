import { api, ApiError, get, setSession } from "./api.js";
import { clear, errorBox, field, h } from "./ui.js";
import * as overview from "./pages/overview.js";
import * as usage from "./pages/usage.js";
import * as requests from "./pages/requests.js";
import * as keys from "./pages/keys.js";
import * as models from "./pages/models.js";
import * as kbs from "./pages/kbs.js";
import * as playground from "./pages/playground.js";
import * as tools from "./pages/tools.js";

const PAGES = [
  ["overview", "Overview", overview],
  ["usage", "Usage", usage],
  ["requests", "Requests", requests],
  ["keys", "Keys & tenants", keys],
  ["models", "Models", models],
  ["kbs", "Knowledge bases", kbs],
  ["playground", "Playground", playground],
  ["tools", "MCP tools & agents", tools],
];

const root = document.getElementById("app");
let session = null;
let stopPage = null;

function signedOut(message) {
  session = null;
  setSession(null);
  if (stopPage) stopPage();
  signIn(message);
}

async function start() {
  let state;
  try {
    state = await get("/console/session");
  } catch (error) {
    clear(root, h("main", { id: "main" }, errorBox(error, "Is the gateway running? Reload this page to try again.")));
    return;
  }
  if (state.signed_in) enter(state);
  else signIn(null, state);
}

async function signIn(message, state) {
  state = state || (await get("/console/session").catch(() => ({})));
  const key = h("input", { type: "password", name: "key", autocomplete: "off", required: true, id: "key", "aria-describedby": "key-help" });
  const problem = h("div", { "aria-live": "polite" }, message ? h("div", { class: "notice" }, message) : null);
  const submit = async (body) => {
    try {
      const s = await api("POST", "/console/session", body);
      key.value = "";
      enter(s);
    } catch (error) {
      clear(problem, errorBox(error));
    }
  };
  const form = h(
    "form",
    { onsubmit: (e) => { e.preventDefault(); submit({ key: key.value }); } },
    field("API key", key),
    h("p", { id: "key-help", class: "muted" }, "The admin key (", h("code", {}, "OPENMAAS_ADMIN_KEY"), ") sees everything; a tenant's API key sees only that tenant. The key is exchanged for a session cookie and not kept in this page."),
    h("button", { type: "submit" }, "Sign in"),
  );
  clear(
    root,
    h(
      "main",
      { id: "main", class: "signin" },
      h("div", { class: "panel" },
        h("h1", {}, "OpenMaaS console"),
        problem,
        form,
        state && state.open_mode
          ? h("div", { class: "notice" }, "This gateway is in open mode (no API keys yet, loopback only). ",
              h("button", { type: "button", class: "secondary", id: "open-mode", onclick: () => submit({}) }, "Continue without a key"))
          : null,
        state && !state.admin_enabled ? h("p", { class: "muted" }, "To manage tenants and keys, start the gateway with OPENMAAS_ADMIN_KEY set.") : null,
      ),
    ),
  );
  key.focus();
}

function enter(s) {
  session = s;
  setSession(s.csrf, signedOut);
  const who = s.scope === "admin" ? "Admin" : s.scope === "open" ? "Open mode" : `Tenant ${s.tenant_name || s.tenant_id}`;
  const links = PAGES.map(([id, label]) => h("a", { href: `#/${id}`, "data-page": id }, label));
  const nav = h(
    "nav",
    { class: "nav", "aria-label": "Console" },
    h("div", { class: "brand" }, "OpenMaaS"),
    links,
    h("div", { class: "who" }, h("span", {}, who, s.key_prefix ? h("span", { class: "mono" }, ` · ${s.key_prefix}`) : null),
      h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out")),
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  clear(root, nav, main);
  window.onhashchange = () => route(main, links);
  route(main, links);
}

async function signOut() {
  try { await api("DELETE", "/console/session"); } catch { /* the session is gone either way */ }
  window.location.hash = "";
  signedOut("You are signed out.");
}

function route(main, links) {
  if (!session) return;
  const [id, ...rest] = (window.location.hash.replace(/^#\/?/, "") || "overview").split("/");
  const page = PAGES.find(([p]) => p === id) || PAGES[0];
  for (const a of links) a.removeAttribute("aria-current");
  for (const a of links) if (a.dataset.page === page[0]) a.setAttribute("aria-current", "page");
  if (stopPage) stopPage();
  stopPage = null;
  clear(main);
  document.title = `${page[1]} · OpenMaaS console`;
  try {
    const stop = page[2].render(main, { session, args: rest.map(decodeURIComponent) });
    stopPage = typeof stop === "function" ? stop : null;
  } catch (error) {
    main.append(errorBox(error));
  }
}

window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof ApiError && event.reason.status === 401) event.preventDefault();
});

start();
