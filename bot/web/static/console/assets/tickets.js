// The ticket board: filters, the list, and one ticket's detail with its full timeline, photos and the loop's
// actions this account's role may take (viewers get none). Every change goes through
// POST /api/v1/tickets/{number}/actions; the server decides, the page only leaves out buttons that cannot apply.
import { $, api, attempt, boot, clear, el, field, fmtTime, meta, safeUrl, select, toast } from "./common.js";

// The actions a page offers, in this order. Their names, like every status, colour, event and role name on this page,
// come from the server (meta: grid/data/ticket_labels.yml, the chat's and Open311's names too).
const OFFERED = ["accept", "resolve", "transfer", "escalate", "return", "dispatch", "review", "reject", "cancel", "merge", "triage"];

let account;
let info;
let current = null; // the ticket shown in the detail panel

const workerName = (id) => (info.workers.find((w) => w.id === id) || {}).name || id;
const gridName = (code) => (info.grids.find((g) => g.code === code) || {}).name || code;
const statusName = (s) => info.statuses[s] || s;
const actionName = (a) => info.actions[a] || a;
const roleName = (r) => info.roles[r] || r;

function colourBadge(colour) {
  return el("span", { class: `badge ${colour}` }, info.colours[colour] || colour);
}

// The workflow role this account acts in: admins as admin, worker accounts as worker or community lead.
function actingRole() {
  if (account.role === "admin") return "admin";
  if (account.role === "worker") return account.worker_role === "lead" ? "lead" : "worker";
  return null;
}

function filtersForm() {
  const grids = info.grids.filter((g) => account.role !== "worker" || account.grids.includes(g.code));
  const form = el(
    "form",
    { class: "filters card", id: "filters" },
    field("状态", select({ name: "status" }, "全部", Object.entries(info.statuses))),
    field("网格", select({ name: "grid" }, "全部", grids.map((g) => [g.code, g.name]))),
    field("分类", select({ name: "category" }, "全部", info.categories.map((c) => [c.name, c.name]))),
    field("颜色", select({ name: "colour" }, "全部", Object.entries(info.colours))),
    field("超期", select({ name: "overdue" }, "全部", [["true", "已超期"], ["false", "未超期"]])),
    el("button", { type: "submit" }, "查询"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    loadList();
  });
  return form;
}

async function loadList() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData($("#filters"))) if (value) params.set(key, value);
  params.set("limit", "200");
  const body = $("#ticket-rows");
  try {
    const tickets = await api(`/api/v1/tickets?${params}`);
    clear(body, tickets.length ? tickets.map(row) : el("tr", {}, el("td", { colspan: 7, class: "muted" }, "没有符合条件的工单")));
    $("#count").textContent = `共 ${tickets.length} 件`;
  } catch (err) {
    toast(err.message, "error");
  }
}

function row(ticket) {
  const tr = el(
    "tr",
    { class: "clickable", dataset: { number: ticket.number }, tabindex: 0 },
    el("td", {}, ticket.number),
    el("td", {}, statusName(ticket.status), ticket.overdue ? [" ", el("span", { class: "badge late" }, "超期")] : null),
    el("td", {}, ticket.category, " ", colourBadge(ticket.colour)),
    el("td", { class: "opt" }, gridName(ticket.grid_code)),
    el("td", {}, ticket.location),
    el("td", { class: "opt desc" }, ticket.description.length > 40 ? ticket.description.slice(0, 40) + "…" : ticket.description),
    el("td", { class: "opt" }, fmtTime(ticket.deadline_at)),
  );
  const open = () => {
    location.hash = ticket.number;
  };
  tr.addEventListener("click", open);
  tr.addEventListener("keydown", (e) => e.key === "Enter" && open());
  if (current && current.number === ticket.number) tr.classList.add("selected");
  return tr;
}

async function showTicket(number) {
  const panel = $("#detail");
  if (!number) {
    clear(panel, el("p", { class: "muted" }, "点击左侧工单查看详情"));
    return;
  }
  try {
    current = await api(`/api/v1/tickets/${encodeURIComponent(number)}`);
  } catch (err) {
    clear(panel, el("p", { class: "error" }, err.message));
    return;
  }
  for (const tr of document.querySelectorAll("#ticket-rows tr")) tr.classList.toggle("selected", tr.dataset.number === number);
  renderDetail(panel, current);
  if (window.matchMedia("(max-width: 760px)").matches) panel.scrollIntoView({ block: "start" }); // phone: list above
}

function photoList(refs) {
  const items = (refs || []).map((ref) => {
    const url = safeUrl(ref);
    return url
      ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, el("img", { src: url, alt: "照片", loading: "lazy" }))
      : el("span", { class: "badge" }, ref);
  });
  return items.length ? el("div", { class: "photos" }, items) : null;
}

function renderDetail(panel, t) {
  const photos = t.events.flatMap((e) => e.photos || []);
  const facts = [
    ["分类", [t.category, " ", colourBadge(t.colour)]],
    ["描述", el("span", { class: "pre", id: "ticket-description" }, t.description)],
    ["位置", t.location],
    ["报告人", t.reporter_name],
    ["网格", gridName(t.grid_code)],
    ["办理人", t.assignee_id ? workerName(t.assignee_id) : "—"],
    ["上报部门", t.department_code || null],
    ["受理时间", fmtTime(t.created_at)],
    ["办理时限", [fmtTime(t.deadline_at), t.overdue ? [" ", el("span", { class: "badge late" }, "超期")] : null]],
    ["办结时间", t.resolved_at ? fmtTime(t.resolved_at) : null],
    ["办理结果", t.result ? el("span", { class: "pre" }, t.result) : null],
    ["居民评价", t.rating],
    ["其他反映居民", t.co_reporters.length ? String(t.co_reporters.length) : null],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  clear(
    panel,
    el("h2", {}, t.number, " ", el("span", { class: "badge", id: "ticket-status" }, statusName(t.status))),
    el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    photos.length ? [el("h3", {}, "照片"), photoList(photos)] : null,
    el("h3", {}, "处理记录"),
    el("ol", { class: "timeline", id: "timeline" }, t.events.map((e) => eventItem(e, t))),
    actionsFor(t),
  );
}

function eventItem(e, t) {
  const who = e.actor_role === "worker" || e.actor_role === "lead" ? workerName(e.actor_id)
    : e.actor_role === "resident" && e.actor_id === t.reporter_id ? t.reporter_name : e.actor_id;
  const moved = e.from_status && e.from_status !== e.to_status ? `${statusName(e.from_status)} → ${statusName(e.to_status)}` : null;
  return el(
    "li",
    {},
    el("div", {}, el("b", {}, actionName(e.action)), " ", el("span", { class: "muted" }, fmtTime(e.created_at))),
    el("div", { class: "muted" }, `${roleName(e.actor_role)}：${who}`, moved ? `　${moved}` : ""),
    e.note ? el("div", { class: "pre" }, e.note) : null,
    photoList(e.photos),
  );
}

// Which actions to offer: the workflow table says which roles may take an action from which status.
function possible(action, t, role) {
  if (action === "triage") return ["worker", "lead", "admin"].includes(role) && info.transitions.merge.sources.includes(t.status);
  const rule = info.transitions[action];
  return Boolean(rule) && rule.roles.includes(role) && rule.sources.includes(t.status);
}

function actionsFor(t) {
  const role = actingRole();
  if (!role) return null; // viewers read only
  const offered = OFFERED.filter((a) => possible(a, t, role));
  if (!offered.length) return null;
  return [el("h3", {}, "处理"), el("div", { class: "actions", id: "actions" }, offered.map((a) => actionForm(a, t)))];
}

function flaggedDuplicateOf(t) {
  const flagged = (t.events || []).find((e) => e.action === "possible_duplicate");
  return flagged ? flagged.note : null;
}

function reasonField(label = "原因") {
  return field(label, el("input", { name: "note", maxlength: 2000 }));
}

function actionForm(action, t) {
  const workers = info.workers.filter((w) => w.id !== t.assignee_id).map((w) => [w.id, `${w.name}（${gridName(w.grid_code)}）`]);
  const inputs = {
    accept: [],
    resolve: [
      field("办理结果", el("textarea", { name: "note", required: true, maxlength: 2000, placeholder: "例如：已更换灯泡" })),
      field("照片地址（每行一个，最多 9 个）", el("textarea", { name: "photos", rows: 2, placeholder: "https://…" })),
    ],
    transfer: [field("转给", select({ name: "target", required: true }, null, workers)), reasonField()],
    escalate: [field("部门", select({ name: "target", required: true }, null, info.departments.map((d) => [d.code, d.name]))), reasonField()],
    return: [reasonField()],
    dispatch: [field("派给", select({ name: "target" }, "本网格值班网格员", workers))],
    review: [reasonField("意见")],
    reject: [reasonField("退回原因")],
    cancel: [reasonField()],
    // A ticket the duplicate check flagged (可能重复) offers the open ticket it may repeat.
    merge: [field("合并到工单号", el("input", { name: "target", required: true, placeholder: "GD…", value: flaggedDuplicateOf(t) }))],
    triage: [field("颜色", select({ name: "colour" }, "不变", Object.entries(info.colours))), reasonField()],
  }[action];
  const button = el("button", { type: "submit", class: action === "cancel" ? "danger" : null }, actionName(action));
  const form = el("form", { class: "action", dataset: { action } }, inputs, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { action, note: (data.get("note") || "").trim() };
    if (data.get("target")) body.target = data.get("target");
    if (data.get("colour")) body.colour = data.get("colour");
    if (data.has("photos")) body.photos = String(data.get("photos")).split(/\s+/).filter(Boolean);
    attempt(button, async () => {
      const updated = await api(`/api/v1/tickets/${encodeURIComponent(t.number)}/actions`, { method: "POST", body });
      toast(`${actionName(action)}：${updated.number} ${statusName(updated.status)}`);
      current = updated;
      renderDetail($("#detail"), updated);
      loadList();
    });
  });
  return form;
}

async function main() {
  account = await boot("tickets");
  info = await meta();
  const app = $("#app");
  clear(
    app,
    el("h1", {}, "工单", " ", el("small", { class: "muted", id: "count" })),
    filtersForm(),
    el(
      "div",
      { class: "split" },
      el(
        "section",
        { class: "card table-wrap" },
        el(
          "table",
          { id: "tickets" },
          el("thead", {}, el("tr", {}, ["工单号", "状态", "分类", "网格", "位置", "描述", "时限"].map((h, i) => el("th", { class: [3, 5, 6].includes(i) ? "opt" : null }, h)))),
          el("tbody", { id: "ticket-rows" }),
        ),
      ),
      el("section", { class: "card", id: "detail", "aria-live": "polite" }),
    ),
  );
  app.removeAttribute("aria-busy");
  window.addEventListener("hashchange", () => showTicket(decodeURIComponent(location.hash.slice(1))));
  await loadList();
  await showTicket(decodeURIComponent(location.hash.slice(1)));
  document.body.dataset.ready = "1";
}

main().catch(() => {});
