// The Outlay dashboard. Every figure comes from the admin API (/admin/v1/) called with the
// operator's token; API data reaches the page only as text nodes and attribute values set
// through the DOM, never as markup (names, labels and agents are chosen by whoever mints keys).

import {
  $, ApiError, TOKEN, api, button, confirmBox, el, labels, scopePath, table, text, usd, when,
} from "./dom.js";
import { drawCharts, loadCharts } from "./overview.js";
import { clearMint, mintWiring, policyEditor, startEditing } from "./writes.js";

const REFRESH_MS = 5000;
const KEYS_PAGE = 500; // the newest keys the Keys view lists
const MAX_POLICY_USAGE = 50;  // usage calls the policies view makes per refresh, at most

// the signed-in token as GET /whoami answers: its role and scopes decide what is offered
let who = { role: "viewer", scopes: [], can: { viewer: true, operator: false, admin: false } };
const may = (role) => Boolean(who.can && who.can[role]);
const scoped = () => who.scopes.length > 0;

// A plain bar: the part spent, then the part reserved by calls in flight, of the cap.
function meter(used, reserved, cap) {
  const pct = cap > 0 ? Math.min(100, (used / cap) * 100) : (used > 0 ? 100 : 0);
  const held = cap > 0 ? Math.min(100 - pct, (reserved / cap) * 100) : 0;
  const level = pct + held >= 100 ? " full" : pct + held >= 80 ? " high" : "";
  const spent = el("div", { className: `bar-used${level}` });
  spent.style.width = `${pct}%`;  // CSSOM, which the CSP allows (no inline style attribute)
  const reserving = el("div", { className: "bar-reserved" });
  reserving.style.width = `${held}%`;
  return el("div", { className: "meter" },
    el("div", { className: "bar", title: `${pct.toFixed(1)} % used, ${held.toFixed(1)} % reserved` },
      spent, reserving),
    el("span", { className: "pct" }, `${(pct + held).toFixed(1)} %`));
}

// The newest audit entry of a scope, when it is a refusal: the scope is refusing calls now,
// whatever its meters show (a budget can refuse at 68 % when a call's worst case is large).
async function lastRefusal(scope) {
  const { entries } = await api(`/audit?${new URLSearchParams({ scope, limit: "1" })}`);
  const newest = entries[0];
  return newest && newest.decision === "refused" ? newest : null;
}

function refusingFlag(refusal) {
  return el("p", { className: "refusing", role: "alert", "data-code": refusal.code || "" },
    el("span", { className: "badge refused" }, "refusing"),
    ` ${refusal.code || "refused"}`, refusal.refused_by ? ` on ${refusal.refused_by}` : "",
    ` since ${when(refusal.time)}`);
}

function usageView(usage, refusal = null) {
  const parts = [];
  if (refusal) parts.push(refusingFlag(refusal));
  parts.push(table([
    { label: "budget", cell: (b) => `${b.period} · ${b.mode}${b.flow === "out" ? " · money out" : ""}` },
    { label: "spent", num: true, cell: (b) => usd(b.spent_usd) },
    { label: "reserved", num: true, cell: (b) => usd(b.reserved_usd) },
    { label: "cap", num: true, cell: (b) => usd(b.cap_usd) },
    { label: "remaining", num: true, cell: (b) => usd(b.remaining_usd) },
    { label: "projected", num: true, cell: (b) => usd(b.projected_usd) },
    { label: "used", cell: (b) => meter(Number(b.spent_usd), Number(b.reserved_usd), Number(b.cap_usd)) },
    { label: "resets", cell: (b) => (b.resets_at ? when(b.resets_at) : "never (total)") },
  ], usage.budgets, "No budgets on this scope.", () => ({ className: "budget" })));
  parts.push(table([
    { label: "window", cell: (w) => w.name },
    { label: "used", num: true, cell: (w) => w.used },
    { label: "limit", num: true, cell: (w) => w.limit },
    { label: "remaining", num: true, cell: (w) => w.remaining },
    { label: "used", cell: (w) => meter(w.used, 0, w.limit) },
    { label: "frees a slot", cell: (w) => when(w.reset_at) },
  ], usage.windows, "No rate windows on this scope.", () => ({ className: "window" })));
  const spend = (title, map) => {
    const rows = Object.entries(map || {});
    return rows.length ? el("p", { className: "spend" }, `${title}: `,
      rows.map(([name, cost]) => `${name || "(none)"} ${usd(cost)}`).join(", ")) : null;
  };
  parts.push(spend(`Spend by model since ${when(usage.spend_since)}`, usage.spend_by_model));
  parts.push(spend(`Spend by vendor since ${when(usage.spend_since)}`, usage.spend_by_vendor));
  if (usage.values) parts.push(...tagValuesView(usage));
  return el("div", { className: `usage${refusal ? " refusing-scope" : ""}`,
    "data-scope": usage.scope, "data-refusing": refusal ? refusal.code || "refused" : "" }, parts);
}

// A tag:<name>=* scope: every value has its own budgets; the values that spent most, each
// with its first budget (the others are in its own usage).
function tagValuesView(usage) {
  const first = (v) => (v.budgets && v.budgets[0]) || null;
  return [
    el("p", { className: "values-seen" },
      `Each value has its own budget. Values seen this period: ${usage.values_seen} ` +
      `(at most ${usage.max_values}); the ${usage.values.length} that spent most:`),
    table([
      { label: "value", cell: (v) => text(v.value) },
      { label: "budget", cell: (v) => (first(v) ? first(v).period : "—") },
      { label: "spent", num: true, cell: (v) => (first(v) ? usd(first(v).spent_usd) : "—") },
      { label: "reserved", num: true, cell: (v) => (first(v) ? usd(first(v).reserved_usd) : "—") },
      { label: "cap", num: true, cell: (v) => (first(v) ? usd(first(v).cap_usd) : "—") },
      { label: "remaining", num: true, cell: (v) => (first(v) ? usd(first(v).remaining_usd) : "—") },
      { label: "used", cell: (v) => (first(v) ? meter(Number(first(v).spent_usd),
        Number(first(v).reserved_usd), Number(first(v).cap_usd)) : "—") },
    ], usage.values, "No values seen this period.", () => ({ className: "tag-value" })),
  ];
}

// -- the views: load() fetches, render(data) builds from data and the view's own state --------

const views = {
  overview: {
    state: { groupBy: "agent", interval: "day", split: "vendor" },
    async load() {
      const [global, report, refusal, charts] = await Promise.all([
        scoped() ? null : api("/usage/global"),
        api(`/reports?group_by=${encodeURIComponent(this.state.groupBy)}`),
        scoped() ? null : lastRefusal("global"),
        scoped() ? null : loadCharts(this.state)]);
      return { global, report, refusal, charts };
    },
    render({ global, report, refusal, charts }) {
      $("overview-global").replaceChildren(global ? usageView(global, refusal) : el("p",
        { className: "empty" }, `This token acts on ${who.scopes.join(", ")} only.`));
      $("overview-charts").hidden = !charts;
      if (charts) drawCharts(charts, global);
      const by = report.group_by;
      const none = { group: "(no group)", model: "(no model)" }[by] || "—";
      $("overview-report").replaceChildren(table([
        { label: by, cell: (r) => (r[by] === null || r[by] === "" ? none : r[by]) },
        { label: "requests", num: true, cell: (r) => r.requests },
        { label: "allowed", num: true, cell: (r) => r.allowed },
        { label: "refused", num: true, cell: (r) => r.refused },
        { label: "cost", num: true, cell: (r) => usd(r.cost_usd) },
        { label: "moved out", num: true, cell: (r) => usd(r.out_usd) },
        { label: "unsettled", num: true, cell: (r) => r.unsettled },
        { label: "estimated", num: true, cell: (r) => r.estimated },
      ], report.rows, "No calls recorded yet.", () => ({ className: "report-row" })));
      $("updated-overview").textContent = `updated ${new Date().toLocaleTimeString()}`;
    },
  },

  keys: {
    state: { selected: null, confirm: null },
    async load() {
      const selected = this.state.selected;
      // a page of the newest keys: per-run keys can number in the hundreds of thousands
      const active = $("show-inactive").checked ? "" : "&active=true";
      const [keys, report, agents, groups, usage, refusal] = await Promise.all([
        api(`/keys?limit=${KEYS_PAGE}${active}`), api("/reports?group_by=key"), api("/agents"),
        api("/groups"), selected ? api(`/usage/${scopePath(`key:${selected}`)}`) : null,
        selected ? lastRefusal(`key:${selected}`) : null]);
      return { keys: keys.keys, more: keys.more, report: report.rows, agents: agents.agents,
        groups: groups.groups, usage, refusal };
    },
    render({ keys, more, report, agents, groups, usage, refusal }) {
      const st = this.state;
      const cost = new Map(report.map((r) => [r.key, r.cost_usd]));
      const now = Date.now();
      const status = (k) => (k.revoked_at ? "revoked"
        : k.expires_at && Date.parse(k.expires_at) <= now ? "expired" : "active");
      const shown = $("show-inactive").checked ? keys : keys.filter((k) => status(k) === "active");
      const actions = (k) => {
        if (status(k) !== "active" || !may("operator")) return null;
        if (st.confirm === `key:${k.id}`) {
          return confirmBox(`Revoke ${k.id}? Its calls stop at once.`, "Yes, revoke",
            () => act(`/keys/${encodeURIComponent(k.id)}/revoke`, `Key ${k.id} revoked.`),
            () => this.ask(null));
        }
        return button("Revoke", () => this.ask(`key:${k.id}`), "danger revoke");
      };
      $("keys-list").replaceChildren(table([
        { label: "id", cell: (k) => button(k.id, () => this.select(k.id), "link usage-link",
          { title: "Show this key's usage" }) },
        { label: "agent", cell: (k) => k.agent },
        { label: "group", cell: (k) => text(k.group) },
        { label: "name", cell: (k) => text(k.name) },
        { label: "labels", cell: (k) => labels(k.labels) },
        { label: "created", cell: (k) => when(k.created_at) },
        { label: "expires", cell: (k) => when(k.expires_at) },
        { label: "status", cell: (k) => el("span", { className: `badge ${status(k)}` }, status(k)) },
        { label: "spent", num: true, cell: (k) => usd(cost.get(k.id) || "0") },
        { label: "", cell: actions },
      ], shown, "No keys.", (k) => ({ "data-key-id": k.id,
        className: k.id === st.selected ? "selected" : "" })));
      $("keys-more").textContent = more
        ? `The newest ${keys.length} keys; older ones are in the admin API (GET /admin/v1/keys).`
        : "";

      $("keys-usage").replaceChildren(...(usage ? [el("div", { className: "card" },
        el("div", { className: "heading" }, el("h3", {}, `Usage of key:${st.selected}`),
          button("Close", () => this.select(null))), usageView(usage, refusal))] : []));

      const killRow = (kind, name) => {
        if (!may("operator")) return null;
        const target = `${kind}:${name}`;
        if (st.confirm === target) {
          return confirmBox(`Revoke every key of ${kind} ${name}?`, "Yes, revoke all",
            () => act(`/${kind}s/${encodeURIComponent(name)}/revoke`, null), () => this.ask(null));
        }
        return button("Revoke all keys", () => this.ask(target), "danger revoke-all");
      };
      $("keys-agents").replaceChildren(table([
        { label: "agent", cell: (a) => a.name },
        { label: "group", cell: (a) => text(a.group) },
        { label: "", cell: (a) => killRow("agent", a.name) },
      ], agents, "No agents.", (a) => ({ "data-agent": a.name })));
      $("keys-groups").replaceChildren(table([
        { label: "group", cell: (g) => g.name },
        { label: "agents", num: true, cell: (g) => g.agents },
        { label: "", cell: (g) => killRow("group", g.name) },
      ], groups, "No groups.", (g) => ({ "data-group": g.name })));
    },
    ask(target) {
      this.state.confirm = target;
      redraw("keys");
    },
    select(id) {
      this.state.selected = id;
      refresh("keys", true);
    },
  },

  policies: {
    state: { editing: null, draft: "", drop: false, confirm: null, error: "" },
    // an open editor is not redrawn by auto-refresh: what is typed stays as it is
    holding() {
      return Boolean(this.state.editing);
    },
    async load() {
      // keys' own policies are under Keys: per-run keys can number in the hundreds of thousands
      const { policies } = await api("/policies?keys=false");
      const shown = policies.slice(0, MAX_POLICY_USAGE);
      const [usage, refusals] = await Promise.all([
        Promise.all(shown.map((p) => api(`/usage/${scopePath(p.scope)}`))),
        Promise.all(shown.map((p) => lastRefusal(p.scope)))]);
      return { policies, usage, refusals };
    },
    render({ policies, usage, refusals }) {
      // a queueing policy says how long its calls wait, the default included
      const shownValue = (p, name, value) => (name === "on_rate_limit" && value === "queue"
        ? `queue, up to ${p.queue_max_wait_s ?? 30} s` : policyValue(value, name));
      const fields = (p) => Object.entries(p)
        .filter(([name]) => !["scope", "managed_by", "queue_max_wait_s"].includes(name)
          || (name === "queue_max_wait_s" && p.on_rate_limit !== "queue"))
        .map(([name, value]) => el("div", { className: "field", "data-field": name },
          el("dt", {}, name), el("dd", {}, shownValue(p, name, value))));
      // a policy the configuration file sets is changed there, not here
      const managed = (p) => (p.managed_by ? el("p", { className: "managed" },
        el("span", { className: "badge read-only" }, "read-only"), ` managed by ${p.managed_by}`) : null);
      const st = this.state;
      const hooks = { redraw: () => redraw("policies"), saved: (scope) => {
        st.editing = null;
        notice(`Policy of ${scope} saved.`);
        refresh("policies", true);
      } };
      const edit = (p) => {
        if (p.managed_by || !may("operator")) return null;
        if (st.editing === p.scope) return policyEditor(p.scope, p, st, hooks);
        return button("Edit", () => { startEditing(st, p.scope, p); redraw("policies"); },
          "edit-policy");
      };
      const cards = policies.map((p, i) =>
        el("div", { className: `card policy${refusals[i] ? " refusing-scope" : ""}`,
          "data-scope": p.scope, "data-refusing": refusals[i] ? refusals[i].code || "refused" : "" },
          el("h3", {}, p.scope), managed(p), el("dl", {}, fields(p)), edit(p),
          usage[i] ? usageView(usage[i], refusals[i]) : el("p", { className: "empty" },
            `Usage not loaded: only the first ${MAX_POLICY_USAGE} policies are read.`)));
      if (st.editing && !policies.some((p) => p.scope === st.editing)) {
        // a scope without a policy yet: PATCH gives it one
        cards.unshift(el("div", { className: "card policy new-policy", "data-scope": st.editing },
          el("h3", {}, `${st.editing} (new)`), policyEditor(st.editing, {}, st, hooks)));
      }
      $("policies-list").replaceChildren(
        ...(cards.length ? cards : [el("p", { className: "empty" }, "No policies.")]));
    },
  },

  audit: {
    state: { scope: "", limit: "100", decision: "" },
    async load() {
      const query = new URLSearchParams({ limit: this.state.limit });
      if (this.state.scope) query.set("scope", this.state.scope);
      return api(`/audit?${query}`);
    },
    render({ entries }) {
      // refusals (or allowed or invalid calls) among the entries read: `limit` counts them all
      const want = this.state.decision;
      const kept = want ? entries.filter((e) => e.decision === want) : entries;
      $("audit-shown").textContent = want
        ? `${kept.length} of the newest ${entries.length} entries are ${want}.` : "";
      const two = (a, b) => [text(a), el("br"), el("span", { className: "sub" }, text(b))];
      const money = (e) => (e.cap_usd === null ? usd(e.spent_usd)
        : `${usd(e.spent_usd)} / ${usd(e.cap_usd)}`);
      // fits 1,400 px: paired cells stack two values, long ids wrap
      $("audit-list").replaceChildren(table([
        { label: "time", cell: (e) => when(e.time) },
        { label: "agent / key", cell: (e) => two(e.agent, e.key_id) },
        { label: "labels", cell: (e) => el("span", { className: "wrap" }, labels(e.labels)) },
        { label: "vendor / model", cell: (e) => two(e.vendor, e.model) },
        { label: "decision", cell: (e) => el("span", {
          className: `badge ${e.decision}`,
          title: e.decision === "credit" ? "money given back: the payment will move less" : undefined,
        }, e.decision) },
        { label: "code / by", cell: (e) => two(e.code, e.refused_by) },
        { label: "status", num: true, cell: (e) => text(e.status) },
        { label: "reserved", num: true, cell: (e) => usd(e.reserved_usd) },
        { label: "cost", num: true, cell: (e) => usd(e.cost_usd) },
        { label: "settlement", cell: (e) => text(e.settlement) },
        { label: "spent / cap", num: true, cell: money },
        { label: "request", cell: (e) => el("code", { className: "wrap" }, text(e.request_id)) },
      ], kept, want ? `No ${want} entries among the newest ${entries.length}.` : "No entries.",
      (e) => ({ className: `audit-row ${e.decision}`, "data-request-id": e.request_id,
        "data-decision": e.decision })));
      $("audit-list").querySelector("table")?.classList.add("audit");
    },
  },

  approvals: {
    state: { state: "pending" },
    async load() {
      return api(this.state.state ? `/approvals?state=${encodeURIComponent(this.state.state)}`
        : "/approvals");
    },
    render({ approvals }) {
      const decide = (a, verdict) => act(`/approvals/${encodeURIComponent(a.id)}/${verdict}`,
        `Approval ${a.id} ${verdict === "approve" ? "approved" : "denied"}.`);
      $("approvals-list").replaceChildren(table([
        { label: "opened", cell: (a) => when(a.created_at) },
        { label: "agent", cell: (a) => text(a.agent) },
        { label: "key", cell: (a) => text(a.key_id) },
        // what is approved: these breaches, this request, at most this much, until then
        { label: "breaches", cell: (a) => (a.breaches || [{ scope: a.scope, code: a.code }])
          .map((b) => `${b.code} on ${b.scope}`).join(", ") },
        { label: "reason", cell: (a) => text(a.reason) },
        { label: "call", cell: (a) => [[a.request?.method, a.request?.path].filter(Boolean).join(" "),
          a.request?.vendor, a.request?.model].filter(Boolean).join(" · ") || "—" },
        { label: "at most", num: true, cell: (a) => usd(a.estimated_usd) },
        { label: "expires", cell: (a) => (a.expires_at ? when(a.expires_at) : "—") },
        { label: "state", cell: (a) => el("span", { className: `badge ${a.state}` }, a.state) },
        { label: "decided", cell: (a) => (a.decided_at ? `${when(a.decided_at)}${a.note ? ` (${a.note})` : ""}` : "—") },
        { label: "used by", cell: (a) => (a.used_by ? [el("code", {}, a.used_by), ` ${when(a.used_at)}`] : "—") },
        { label: "", cell: (a) => (a.state === "pending" && may("operator")
          ? [button("Approve", () => decide(a, "approve"), "approve"), " ",
            button("Deny", () => decide(a, "deny"), "danger deny")] : null) },
      ], approvals, this.state.state === "pending" ? "No approvals waiting." : "No approvals.",
      (a) => ({ "data-approval-id": a.id })));
    },
  },

  "admin-audit": {
    state: { target: "" },
    async load() {
      const query = new URLSearchParams({ limit: "200" });
      if (this.state.target) query.set("target", this.state.target);
      return api(`/admin-audit?${query}`);
    },
    render({ entries }) {
      const value = (v) => (v === null || v === undefined ? "—"
        : el("code", {}, JSON.stringify(v)));
      $("admin-audit-list").replaceChildren(table([
        { label: "time", cell: (e) => when(e.time) },
        { label: "token", cell: (e) => text(e.token_name) },
        { label: "action", cell: (e) => text(e.action) },
        { label: "target", cell: (e) => text(e.target) },
        { label: "before", cell: (e) => value(e.before) },
        { label: "after", cell: (e) => value(e.after) },
      ], entries, "No admin writes.", (e) => ({ className: "admin-audit-row",
        "data-target": e.target })));
    },
  },

  providers: {
    state: {},
    async load() {
      return api("/providers");
    },
    render({ worker, providers }) {
      $("providers-worker").textContent =
        `Circuit breakers as worker process ${worker} sees them; each worker keeps its own.`;
      $("providers-list").replaceChildren(table([
        { label: "kind", cell: (p) => text(p.kind) },
        { label: "provider", cell: (p) => text(p.provider) },
        { label: "endpoint", cell: (p) => el("code", {}, text(p.base_url)) },
        { label: "weight", num: true, cell: (p) => text(p.weight) },
        { label: "state", cell: (p) => el("span", { className: `badge ${p.state}` }, p.state) },
        { label: "failures in a row", num: true, cell: (p) => text(p.consecutive_failures) },
        { label: "simulated", cell: (p) => p.simulated
          ? el("span", { className: "badge simulated" }, "simulated") : text("no") },
      ], providers, "No endpoints.", (p) => ({ "data-provider": p.provider,
        "data-simulated": String(Boolean(p.simulated)) })));
    },
  },
};

function policyValue(value, name) {
  if (name === "loop_guard" && value && typeof value === "object") {
    // the same request (key, route, body) at most max_repeats times within window_s
    return `same request at most ${value.max_repeats} times per ${value.window_s} s`;
  }
  if (Array.isArray(value)) {
    return value.map((v) => (v && typeof v === "object"
      ? `$${v.usd} per ${v.period}, ${v.mode}${v.flow === "out" ? ", money out" : ""}${v.warn_at !== undefined ? `, warn at ${Math.round(v.warn_at * 1000) / 10} %` : ""}`
      : String(v))).join("; ") || "(none)";
  }
  if (value && typeof value === "object" && Object.values(value).every(Array.isArray)) {
    // operations, accounts, destinations: what each vendor allows
    return Object.entries(value).map(([vendor, list]) => `${vendor}: ${list.join(", ") || "none"}`)
      .join("; ") || "(none)";
  }
  return value && typeof value === "object" ? JSON.stringify(value) : String(value);
}

// -- navigation, refresh, notices ------------------------------------------------------------

let current = "overview";
const drawn = {};      // per view: the data last drawn and its JSON, to redraw only on change
const latest = {};     // per view: the number of its newest load; older answers are dropped
let loading = 0;       // loads in flight: auto-refresh waits for them
let refreshFailed = false;

function notice(message, kind = "ok") {
  const box = $("status");
  box.textContent = message;
  box.className = `status ${kind}`;
  box.hidden = !message;
}

async function refresh(name = current, force = false) {
  const view = views[name];
  const mine = (latest[name] = (latest[name] || 0) + 1);
  loading += 1;
  try {
    const data = await view.load();
    if (mine !== latest[name] || !signedIn()) return;
    const json = JSON.stringify(data);
    if (force || !drawn[name] || drawn[name].json !== json) {
      drawn[name] = { data, json };
      if (name === current && !(view.holding && view.holding() && !force)) view.render(data);
    }
    if (refreshFailed) notice("");
    refreshFailed = false;
  } catch (err) {
    if (mine !== latest[name]) return;
    refreshFailed = true;
    failed(err);
  } finally {
    loading -= 1;
  }
}

function redraw(name) {
  if (drawn[name]) views[name].render(drawn[name].data);
}

function failed(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut("The gateway no longer accepts this admin token. Sign in again.");
    return;
  }
  notice(err.message || String(err), "error");
}

// An action (revoke, approve, deny), then a fresh look at the view it was taken from.
async function act(path, done) {
  try {
    const answer = await api(path, { method: "POST", body: {} });
    if (views.keys.state.confirm) views.keys.state.confirm = null;
    notice(done || `Revoked ${answer.revoked.length} key(s) of ${answer.agent ? `agent ${answer.agent}` : `group ${answer.group}`}.`);
  } catch (err) {
    failed(err);
  }
  await refresh(current, true);
}

function show(name) {
  current = views[name] ? name : "overview";
  for (const id of Object.keys(views)) $(`view-${id}`).hidden = id !== current;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === current);
  }
  notice("");
  if (drawn[current]) redraw(current);
  refresh(current, true);
}

// -- signing in and out ----------------------------------------------------------------------

const signedIn = () => Boolean(sessionStorage.getItem(TOKEN));

async function enter() {
  if (!who.name) {
    try {
      who = await api("/whoami");
    } catch (err) {
      failed(err);
      return;
    }
  }
  $("whoami").textContent = `${who.name} · ${who.role}${scoped() ? ` · ${who.scopes.join(", ")}` : ""}`;
  for (const option of $("report-group").options) {
    option.hidden = scoped() && ["model", "vendor"].includes(option.value);
  }
  $("keys-mint").hidden = !may("operator");
  $("policy-new-form").hidden = !may("operator");
  $("sign-in").hidden = true;
  $("sign-in-error").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  show(location.hash.slice(1));
}

function signOut(message = "", kind = "error") {
  sessionStorage.removeItem(TOKEN);
  for (const name of Object.keys(views)) {
    delete drawn[name];
    $(`view-${name}`).hidden = true;
  }
  // nothing read with the token stays on the page
  for (const id of ["overview-global", "overview-report", "keys-list", "keys-more", "keys-usage",
    "keys-agents", "keys-groups", "policies-list", "audit-list", "approvals-list", "providers-list",
    "providers-worker", "admin-audit-list", "whoami", "chart-spend", "chart-refusals",
    "chart-projection", "chart-workflows", "chart-runs"]) $(id).replaceChildren();
  who = { role: "viewer", scopes: [], can: {} };
  views.keys.state.selected = null;
  views.keys.state.confirm = null;
  views.policies.state.editing = null;
  clearMint();
  $("keys-mint").hidden = true;
  $("policy-new-form").hidden = true;
  notice("");
  $("nav").hidden = true;
  $("session").hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.textContent = message;
  error.className = kind;
  error.hidden = !message;
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  const error = $("sign-in-error");
  error.className = "error";
  if (!/^[\x21-\x7e]+$/.test(token)) {
    error.textContent = "An admin token is printable ASCII without spaces.";
    error.hidden = false;
    return;
  }
  $("sign-in-button").disabled = true;
  try {
    who = await api("/whoami", { token });
  } catch (err) {
    error.textContent = err.status === 401
      ? "Wrong admin token: the gateway refused it (invalid_admin_token)."
      : err.message;
    error.hidden = false;
    return;
  } finally {
    $("sign-in-button").disabled = false;
  }
  sessionStorage.setItem(TOKEN, token);
  $("token").value = "";
  enter();
}

// -- wiring ----------------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut("Signed out.", "info"));
$("refresh").addEventListener("click", () => refresh(current, true));
window.addEventListener("hashchange", () => signedIn() && show(location.hash.slice(1)));
$("report-group").addEventListener("change", (event) => {
  views.overview.state.groupBy = event.target.value;
  refresh("overview", true);
});
$("show-inactive").addEventListener("change", () => refresh("keys", true));
for (const [id, field] of [["series-interval", "interval"], ["series-split", "split"]]) {
  $(id).addEventListener("change", (event) => {
    views.overview.state[field] = event.target.value;
    refresh("overview", true);
  });
}
mintWiring({ refresh, notice });
$("policy-new-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const scope = $("policy-new-scope").value.trim();
  if (!scope) return;
  const st = views.policies.state;
  const known = drawn.policies?.data.policies.find((p) => p.scope === scope);
  startEditing(st, scope, known || {});
  $("policy-new-scope").value = "";
  redraw("policies");
});
$("audit-decision").addEventListener("change", (event) => {
  views.audit.state.decision = event.target.value;
  redraw("audit");
});
$("audit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  views.audit.state.scope = $("audit-scope").value.trim();
  views.audit.state.limit = $("audit-limit").value;
  views.audit.state.decision = $("audit-decision").value;
  refresh("audit", true);
});
$("admin-audit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  views["admin-audit"].state.target = $("admin-audit-target").value.trim();
  refresh("admin-audit", true);
});
$("approval-state").addEventListener("change", (event) => {
  views.approvals.state.state = event.target.value;
  refresh("approvals", true);
});
setInterval(() => {
  if (signedIn() && $("auto-refresh").checked && !document.hidden && !loading) refresh(current);
}, REFRESH_MS);

if (signedIn()) enter();
else signOut();
