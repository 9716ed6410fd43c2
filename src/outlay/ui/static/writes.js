// The writes an operator makes every day: mint a key (its secret shown once), and edit a
// scope's policy (PATCH: only what changed). Each asks to be confirmed, and shows the
// admin API's refusal where it was made. Revoking is in the Keys view itself.

import { $, api, button, confirmBox, el, scopePath } from "./dom.js";

const LABEL = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

// "team=billing, run=r-42" as labels; a malformed pair throws, naming it
export function parseLabels(value) {
  const found = {};
  for (const part of value.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    const name = at < 0 ? "" : part.slice(0, at).trim();
    if (!LABEL.test(name) || !part.slice(at + 1).trim()) {
      throw new Error(`Labels are name=value pairs separated by commas: ${JSON.stringify(part)} is not one.`);
    }
    found[name] = part.slice(at + 1).trim();
  }
  return found;
}

function say(id, message) {
  const box = $(id);
  box.textContent = message;
  box.hidden = !message;
}

// -- minting a key ---------------------------------------------------------------------------

export function mintWiring({ refresh, notice }) {
  const form = $("mint-form");
  const reset = () => {
    $("mint-confirm").replaceChildren();
    $("mint-confirm").hidden = true;
    $("mint-submit").disabled = false;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    say("mint-error", "");
    const body = { agent: $("mint-agent").value.trim() };
    try {
      if (!body.agent) throw new Error("A key needs an agent.");
      if ($("mint-name").value.trim()) body.name = $("mint-name").value.trim();
      const labels = parseLabels($("mint-labels").value);
      if (Object.keys(labels).length) body.labels = labels;
      const ttl = $("mint-ttl").value.trim();
      if (ttl) {
        if (!/^\d+$/.test(ttl) || Number(ttl) <= 0) {
          throw new Error("Expires after is a whole number of seconds above 0.");
        }
        body.ttl_seconds = Number(ttl);
      }
    } catch (err) {
      say("mint-error", err.message);
      return;
    }
    $("mint-submit").disabled = true;
    const what = [body.name && `named ${body.name}`, body.labels && "with its labels",
      body.ttl_seconds && `expiring after ${body.ttl_seconds} s`].filter(Boolean).join(", ");
    $("mint-confirm").replaceChildren(confirmBox(
      `Mint a key for agent ${body.agent}${what ? ` (${what})` : ""}?`, "Yes, mint",
      async () => {
        reset();
        try {
          const minted = await api("/keys", { method: "POST", body });
          showSecret(minted);
          form.reset();
          notice(`Key ${minted.id} minted for agent ${minted.agent}.`);
        } catch (err) {
          say("mint-error", `${err.message}${err.code ? ` (${err.code})` : ""}`);
        }
        await refresh("keys", true);
      }, reset));
    $("mint-confirm").hidden = false;
  });
  $("mint-copy").addEventListener("click", copySecret);
  $("mint-done").addEventListener("click", clearMint);
}

function showSecret(minted) {
  $("mint-secret-id").textContent = minted.id;
  $("mint-secret-value").textContent = minted.key;
  say("mint-copied", "");
  $("mint-secret").hidden = false;
}

async function copySecret() {
  const value = $("mint-secret-value").textContent;
  try {
    await navigator.clipboard.writeText(value);
    say("mint-copied", "Copied to the clipboard.");
  } catch {
    // no clipboard access (an insecure origin, a refused permission): select it for Ctrl+C
    const range = document.createRange();
    range.selectNodeContents($("mint-secret-value"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    say("mint-copied", "Selected: press Ctrl+C (⌘C) to copy it.");
  }
}

// The secret leaves the page: once the operator has it, on sign-out, and for a viewer.
export function clearMint() {
  $("mint-secret-value").textContent = "";
  $("mint-secret-id").textContent = "";
  $("mint-secret").hidden = true;
  say("mint-copied", "");
  say("mint-error", "");
  $("mint-confirm").replaceChildren();
  $("mint-confirm").hidden = true;
  $("mint-submit").disabled = false;
}

// -- editing a policy ------------------------------------------------------------------------

const editable = (policy) => Object.fromEntries(Object.entries(policy || {})
  .filter(([name]) => !["scope", "managed_by"].includes(name)));

// The PATCH body that turns `before` into `after`: changed fields, and null for removed ones.
export function policyPatch(before, after) {
  const patch = {};
  for (const [name, value] of Object.entries(after)) {
    if (JSON.stringify(value) !== JSON.stringify(before[name])) patch[name] = value;
  }
  for (const name of Object.keys(before)) {
    if (!(name in after)) patch[name] = null;
  }
  return patch;
}

// The editor of one scope's policy, drawn from `state` ({editing, draft, drop, confirm,
// error}) so a redraw keeps what is typed; `redraw` and `saved` are the view's.
export function policyEditor(scope, policy, state, { redraw, saved }) {
  const area = el("textarea", { className: "policy-json", "aria-label": `Policy of ${scope}` });
  area.value = state.draft;
  area.rows = Math.min(16, Math.max(4, state.draft.split("\n").length + 1));
  area.spellcheck = false;
  area.addEventListener("input", () => { state.draft = area.value; });
  const drop = el("input", { type: "checkbox", className: "policy-drop" });
  drop.checked = state.drop;
  drop.addEventListener("change", () => { state.drop = drop.checked; });
  const check = () => {
    let after;
    try {
      after = JSON.parse(state.draft);
    } catch (err) {
      return fail(`Not valid JSON: ${err.message}`);
    }
    if (!after || typeof after !== "object" || Array.isArray(after)) {
      return fail("A policy is a JSON object of fields (§2 of the contract).");
    }
    const patch = policyPatch(editable(policy), after);
    if (!Object.keys(patch).length) return fail("Nothing changed.");
    state.error = "";
    state.confirm = patch;
    return redraw();
  };
  const fail = (message) => {
    state.error = message;
    state.confirm = null;
    redraw();
  };
  const save = async () => {
    const patch = state.confirm;
    state.confirm = null;
    try {
      await api(`/policies/${scopePath(scope)}${state.drop ? "?drop_budgets=true" : ""}`,
        { method: "PATCH", body: patch });
    } catch (err) {
      return fail(`${err.message}${err.code ? ` (${err.code})` : ""}`);
    }
    return saved(scope);
  };
  const changes = (patch) => Object.entries(patch)
    .map(([name, value]) => (value === null ? `remove ${name}` : `set ${name}`)).join(", ");
  return el("div", { className: "policy-editor", "data-scope": scope },
    area,
    el("label", {}, drop, " Drop the budgets this removes (drop_budgets)"),
    state.error ? el("p", { className: "error policy-error", role: "alert" }, state.error) : null,
    state.confirm
      ? el("p", {}, confirmBox(`${changes(state.confirm)} on ${scope}?`, "Yes, save", save,
        () => { state.confirm = null; redraw(); }))
      : el("p", {}, button("Save", check, "save-policy"), " ",
        button("Cancel", () => { state.editing = null; state.error = ""; redraw(); },
          "cancel-policy")));
}

export function startEditing(state, scope, policy) {
  state.editing = scope;
  state.draft = JSON.stringify(editable(policy), null, 2);
  state.drop = false;
  state.confirm = null;
  state.error = "";
}
