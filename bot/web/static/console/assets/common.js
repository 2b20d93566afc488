// Shared by every console page: the API client (cookie session + X-CSRF-Token), the navigation bar, and DOM
// helpers. Data from the server is only ever put into the page as text (textContent / text nodes), never as
// HTML: residents write ticket descriptions, and a "<script>" in one must show as those characters.

let account = null;

export class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

function messageOf(status, body) {
  const detail = body && body.detail;
  if (detail && typeof detail === "object" && !Array.isArray(detail) && detail.message) return detail.message;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return "输入有误：" + detail.map((d) => `${(d.loc || []).slice(1).join(".")} ${d.msg}`).join("；");
  }
  return `请求失败（${status}）`;
}

// Calls the REST API as the logged-in account. `body` is sent as JSON, `form` (FormData) as multipart.
export async function api(path, { method = "GET", body, form } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && account && account.csrf_token) headers["X-CSRF-Token"] = account.csrf_token;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (response.status === 401 && !path.endsWith("/auth/login")) {
    toLogin();
    throw new ApiError(401, "请先登录");
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, messageOf(response.status, data), data && data.detail);
  return data;
}

// Set by the logout button: a request still in flight then gets 401, and must not start a second navigation
// (to the login with ?next=) that aborts the logout's own.
let loggingOut = false;

function toLogin() {
  if (loggingOut) return;
  const next = encodeURIComponent(location.pathname + location.search);
  location.href = `/console/login?next=${next}`;
}

// el("div", {class: "x", onclick: f}, "text", child…): strings become text nodes, never markup.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "value" || key === "checked" || key === "selected") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

const timeFormat = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
});

export function fmtTime(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? String(iso) : timeFormat.format(moment);
}

export function fmtRate(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`;
}

// Only web addresses and our own /media/ paths become links or pictures: never javascript: or data: URLs.
export function safeUrl(value) {
  if (typeof value !== "string") return null;
  if (value.startsWith("/media/")) return value;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

export function toast(message, kind = "ok") {
  let box = $("#toasts");
  if (!box) {
    box = el("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const item = el("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

// Runs an async action from a button: disables it meanwhile and shows the API's sentence when refused.
export async function attempt(button, work) {
  if (button) button.disabled = true;
  try {
    return await work();
  } catch (err) {
    toast(err.message || String(err), "error");
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

const NAV = [
  ["tickets", "工单", ["admin", "worker", "viewer"]],
  ["dashboard", "统计", ["admin", "worker", "viewer"]],
  ["warnings", "预警", ["admin", "worker", "viewer"]],
  ["knowledge", "知识库", ["admin", "worker", "viewer"]],
  ["notices", "惠民信息", ["admin", "worker", "viewer"]],
  ["groups", "群与网格", ["admin", "worker", "viewer"]],
];
const ROLE_NAMES = { admin: "管理员", worker: "网格员", viewer: "只读" };

// Every page but the login starts here: who is logged in (or off to the login page), then the navigation bar.
export async function boot(page) {
  try {
    account = await api("/api/v1/me");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) toast(err.message, "error");
    throw err;
  }
  const links = NAV.filter(([, , roles]) => roles.includes(account.role)).map(([name, label]) =>
    el("a", { href: `/console/${name}`, class: name === page ? "active" : null, "aria-current": name === page ? "page" : null }, label),
  );
  const logout = el("button", { type: "button", class: "link", id: "logout" }, "退出");
  logout.addEventListener("click", () =>
    attempt(logout, async () => {
      loggingOut = true;
      try {
        await api("/api/v1/auth/logout", { method: "POST" });
      } catch (err) {
        // A session that had already ended is logged out all the same; any other failure stays on the page.
        if (!(err instanceof ApiError && err.status === 401)) {
          loggingOut = false;
          throw err;
        }
      }
      location.href = "/console/login";
    }),
  );
  const bar = el(
    "header",
    { class: "topbar" },
    el("span", { class: "brand" }, "网格助手"),
    el("nav", {}, links),
    el("span", { class: "who", id: "who" }, `${account.display_name}（${ROLE_NAMES[account.role] || account.role}）`, logout),
  );
  document.body.prepend(bar);
  document.body.classList.add(`role-${account.role}`);
  return account;
}

export function currentAccount() {
  return account;
}

let metaPromise = null;
export function meta() {
  metaPromise = metaPromise || api("/api/v1/console/meta");
  return metaPromise;
}

// <select> with an "all" option first (value "") and [value, label] pairs.
export function select(attrs, allLabel, pairs, chosen = "") {
  const options = allLabel === null ? [] : [el("option", { value: "" }, allLabel)];
  for (const [value, label] of pairs) options.push(el("option", { value, selected: value === chosen }, label));
  return el("select", attrs, options);
}

export function field(label, control, hint) {
  return el("label", { class: "field" }, el("span", {}, label), control, hint ? el("small", {}, hint) : null);
}
