// What every part of the dashboard shares: the admin API client, and building the page from
// text only (API data reaches the page as text nodes and attribute values, never as markup).

export const API = "/admin/v1";
export const TOKEN = "outlay.adminToken";

export const $ = (id) => document.getElementById(id);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- the admin API ---------------------------------------------------------------------------

export async function api(path, { method = "GET", body, token = sessionStorage.getItem(TOKEN) } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method, headers, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "unreachable", `The gateway could not be reached (${err.message}).`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || `${method} ${API}${path} answered ${response.status}.`);
  }
  return data;
}

export const scopePath = (scope) => encodeURIComponent(scope);

// -- building the page: text only ------------------------------------------------------------

const ATTRIBUTES = new Set(["title", "type", "colspan", "role", "aria-label", "value"]);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else if (name === "disabled") node.disabled = Boolean(value);
    else if (name.startsWith("data-") || ATTRIBUTES.has(name)) node.setAttribute(name, String(value));
    else throw new Error(`el: no property ${name}`);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));  // strings become text nodes
  }
  return node;
}

export function button(label, onclick, className = "", extra = {}) {
  return el("button", { type: "button", className, onclick, ...extra }, label);
}

export function table(columns, rows, empty, rowProps = () => ({})) {
  if (!rows.length) return el("p", { className: "empty" }, empty);
  return el("div", { className: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { className: c.num ? "num" : "" },
      c.label)))),
    el("tbody", {}, rows.map((row) => el("tr", rowProps(row), columns.map((c) =>
      el("td", { className: c.num ? "num" : "" }, c.cell(row))))))));
}

// "-15" (money given back) reads "−$15"
export const usd = (value) => (value === null || value === undefined ? "—"
  : String(value).startsWith("-") ? `−$${String(value).slice(1)}` : `$${value}`);
export const when = (iso) => (iso ? iso.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "—");
export const text = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));
export const labels = (map) => Object.entries(map || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—";

export function confirmBox(question, yesLabel, onYes, onNo) {
  return el("span", { className: "confirm" }, question, " ",
    button(yesLabel, onYes, "danger confirm-yes"), " ", button("Cancel", onNo, "confirm-no"));
}

