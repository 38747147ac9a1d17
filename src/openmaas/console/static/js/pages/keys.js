import { api, get } from "../api.js";
import { badge, clear, copy, empty, errorBox, field, fmt, h, table, time } from "../ui.js";

export function render(main, { session }) {
  const admin = session.scope === "admin";
  const out = h("div", { "aria-live": "polite" });
  const once = h("div", { "aria-live": "assertive" });
  main.append(h("h1", {}, "Keys, tenants and plans"), once);
  if (!admin) {
    main.append(h("p", { class: "notice" }, session.scope === "open"
      ? "Open mode: start the gateway with OPENMAAS_ADMIN_KEY set and sign in with it to create tenants and keys."
      : "You are signed in with a tenant key: you see your tenant and its keys. The admin creates and revokes keys."));
  }
  main.append(out);
  const reload = () => load(out, once, admin).catch((error) => clear(out, errorBox(error)));
  reload();
  return null;

  async function load() {
    const [tenants, keys, plans] = await Promise.all([get("/admin/tenants"), get("/admin/keys"), get("/admin/plans")]);
    const tenantName = Object.fromEntries(tenants.data.map((t) => [t.id, t.name]));
    const showKey = (title, record) => clear(once, h("div", { class: "secret", role: "status" },
      h("div", {}, h("strong", {}, title), h("div", {}, "Copy it now: it is shown only once. "), h("code", { id: "new-key" }, record.key)),
      h("button", { type: "button", onclick: (e) => copy(record.key, e.target) }, "Copy")));
    const act = (fn) => async () => { try { await fn(); reload(); } catch (error) { clear(once, errorBox(error)); } };
    const budget = (row) => {
      if (row.budget_usd === null || row.budget_usd === undefined) return h("span", { class: "muted" }, "none");
      const spent = (row.spend_usd || {})[row.budget_period || "month"] || 0;
      return h("span", {}, `${fmt.usd(spent)} of ${fmt.usd(row.budget_usd)} / ${row.budget_period}`, spent >= row.budget_usd ? badge("exhausted", "bad") : null);
    };
    const tenantRows = table([
      ["Tenant", (t) => h("span", {}, t.name, " ", h("span", { class: "muted mono" }, t.id))],
      ["Plan", (t) => t.plan_id || "–"],
      ["Privacy", (t) => (admin ? privacySelect(t, act) : t.privacy)],
      ["Budget", budget],
      ["Spend today", (t) => fmt.usd(t.spend_usd.day), { num: true }],
      ["Spend this month", (t) => fmt.usd(t.spend_usd.month), { num: true }],
      ["Limits", (t) => [t.rpm ? `${fmt.int(t.rpm)} rpm` : null, t.tpm ? `${fmt.int(t.tpm)} tpm` : null].filter(Boolean).join(", ") || "–"],
      ["State", (t) => (t.enabled ? badge("enabled", "ok") : badge("disabled", "bad"))],
      ...(admin ? [["", (t) => h("button", { type: "button", class: "secondary", onclick: act(() => api("PATCH", `/admin/tenants/${t.id}`, { enabled: !t.enabled })) }, t.enabled ? "Disable" : "Enable")]] : []),
    ], tenants.data, "Tenants");
    const keyRows = table([
      ["Key", (k) => h("span", {}, k.name, " ", h("span", { class: "mono muted" }, k.prefix))],
      ["Tenant", (k) => tenantName[k.tenant_id] || k.tenant_id],
      ["Created", (k) => time(k.created_at)],
      ["Models", (k) => (k.models ? k.models.join(", ") : "all")],
      ["Privacy", (k) => k.privacy || "tenant's"],
      ["Budget", budget],
      ["Spend this month", (k) => fmt.usd(k.spend_usd.month), { num: true }],
      ["State", (k) => (k.enabled ? badge("active", "ok") : badge("revoked", "bad"))],
      ...(admin ? [["", (k) => h("span", { class: "row" },
        h("button", { type: "button", class: "danger", disabled: !k.enabled, onclick: act(async () => { if (confirm(`Revoke ${k.name} (${k.prefix})? Its next request is refused.`)) await api("POST", `/admin/keys/${k.id}/revoke`); }) }, "Revoke"),
        h("button", { type: "button", class: "secondary", disabled: !k.enabled, onclick: act(async () => showKey(`New secret for ${k.name}`, await api("POST", `/admin/keys/${k.id}/rotate`))) }, "Rotate"))]] : []),
    ], keys.data, "Keys");
    clear(
      out,
      admin ? forms(tenants.data, plans.data, act, showKey) : null,
      h("h2", {}, "Tenants"), tenants.data.length ? tenantRows : empty(admin ? "No tenants yet: create one above." : "No tenant."),
      h("h2", {}, "API keys"), keys.data.length ? keyRows : empty(admin ? "No keys yet: create one above (it is shown once)." : "No keys."),
      h("h2", {}, "Plans"), plans.data.length ? table([
        ["Plan", (p) => `${p.name} (${p.id})`],
        ["Monthly tokens", (p) => fmt.int(p.monthly_token_quota), { num: true }],
        ["Monthly cost", (p) => fmt.usd(p.monthly_cost_quota_usd), { num: true }],
        ["Models", (p) => (p.models ? p.models.join(", ") : "all")],
        ["rpm", (p) => fmt.int(p.rpm), { num: true }],
      ], plans.data, "Plans") : empty("No plans."),
    );
  }
}

// The tenant's privacy policy (allow | mask | local_only, or a per-category spec set through the API).
function privacySelect(tenant, act) {
  const options = ["allow", "mask", "local_only"];
  if (!options.includes(tenant.privacy)) options.push(tenant.privacy);
  return h("select", {
    "aria-label": `Privacy policy of ${tenant.name}`,
    onchange: (e) => act(() => api("PATCH", `/admin/tenants/${tenant.id}`, { privacy: e.target.value }))(),
  }, options.map((p) => h("option", { value: p, selected: p === tenant.privacy }, p)));
}

function forms(tenants, plans, act, showKey) {
  const tName = h("input", { name: "tenant_name", required: true, size: 16 });
  const tPlan = h("select", { name: "tenant_plan" }, h("option", { value: "" }, "none"), plans.map((p) => h("option", { value: p.id }, p.name)));
  const tBudget = h("input", { name: "tenant_budget", type: "number", min: 0, step: "0.01", size: 8, placeholder: "none" });
  const tPrivacy = h("select", { name: "tenant_privacy" }, ["allow", "mask", "local_only"].map((p) => h("option", { value: p }, p)));
  const kTenant = h("select", { name: "key_tenant", required: true }, tenants.map((t) => h("option", { value: t.id }, t.name)));
  const kName = h("input", { name: "key_name", required: true, size: 16, value: "default" });
  const kModels = h("input", { name: "key_models", size: 18, placeholder: "all (or a,b)" });
  const kBudget = h("input", { name: "key_budget", type: "number", min: 0, step: "0.01", size: 8, placeholder: "none" });
  const pId = h("input", { name: "plan_id", required: true, size: 10, pattern: "[a-z0-9][a-z0-9_-]*" });
  const pName = h("input", { name: "plan_name", required: true, size: 12 });
  const pTokens = h("input", { name: "plan_tokens", type: "number", min: 0, size: 10, placeholder: "none" });
  const pRpm = h("input", { name: "plan_rpm", type: "number", min: 1, size: 6, placeholder: "none" });
  const num = (input) => (input.value === "" ? undefined : Number(input.value));
  return h("div", {},
    h("form", { class: "panel row", "aria-label": "Create a tenant", onsubmit: (e) => { e.preventDefault(); act(() => api("POST", "/admin/tenants", { name: tName.value, plan: tPlan.value || undefined, budget_usd: num(tBudget), privacy: tPrivacy.value }))(); } },
      h("strong", {}, "New tenant"), field("Name", tName), field("Plan", tPlan), field("Budget (USD / month)", tBudget), field("Privacy", tPrivacy), h("button", { type: "submit" }, "Create tenant")),
    h("form", { class: "panel row", "aria-label": "Create a key", onsubmit: async (e) => {
      e.preventDefault();
      const models = kModels.value.split(",").map((m) => m.trim()).filter(Boolean);
      await act(async () => showKey(`New key ${kName.value}`, await api("POST", "/admin/keys", { tenant: kTenant.value, name: kName.value, models: models.length ? models : undefined, budget_usd: num(kBudget) })))();
    } }, h("strong", {}, "New key"), field("Tenant", kTenant), field("Name", kName), field("Models", kModels), field("Budget (USD / month)", kBudget),
      h("button", { type: "submit", disabled: !tenants.length }, "Create key")),
    h("form", { class: "panel row", "aria-label": "Create a plan", onsubmit: (e) => { e.preventDefault(); act(() => api("POST", "/admin/plans", { id: pId.value, name: pName.value, monthly_token_quota: num(pTokens), rpm: num(pRpm) }))(); } },
      h("strong", {}, "New plan"), field("Id", pId), field("Name", pName), field("Monthly tokens", pTokens), field("rpm", pRpm), h("button", { type: "submit" }, "Create plan")),
  );
}
