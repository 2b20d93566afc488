// Benefit notices: the list, composing one (admins: title, body, targets, schedule), and each notice's delivery
// status per group, with cancel. Times typed here are Asia/Shanghai local times, as the API reads them.
import { $, api, attempt, boot, clear, el, field, fmtTime, meta, toast } from "./common.js";

const STATUS = { scheduled: "待发布", sending: "发送中", done: "已完成", cancelled: "已撤回" };
const DELIVERY = { pending: "待发送", sending: "发送中", sent: "已发送", failed: "失败", cancelled: "已取消", expired: "已过期" };
let account;
let info;

function checkboxes(name, pairs) {
  return el("div", { class: "row", dataset: { group: name } }, pairs.map(([value, label]) =>
    el("label", {}, el("input", { type: "checkbox", name, value }), " ", label)));
}

function composeSection() {
  const level = (l) => info.regions.filter((r) => r.level === l).map((r) => [r.code, r.name]);
  const form = el("form", { id: "notice-form", class: "row" },
    el("label", { class: "field wide" }, el("span", {}, "标题"), el("input", { name: "title", required: true, maxlength: 100 })),
    el("label", { class: "field wide" }, el("span", {}, "正文"), el("textarea", { name: "body", required: true, maxlength: 2000, rows: 4 })),
    field("链接", el("input", { name: "link", type: "url", placeholder: "https://…" })),
    field("图片地址", el("input", { name: "image_url", type: "url", placeholder: "https://…" })),
    el("fieldset", { class: "field wide" }, el("legend", {}, "发给哪些群"),
      el("label", {}, el("input", { type: "checkbox", name: "all", value: "true", id: "target-all" }), " 全部群"),
      el("div", { class: "muted" }, "街道"), checkboxes("streets", level("street")),
      el("div", { class: "muted" }, "社区"), checkboxes("communities", level("community")),
      el("div", { class: "muted" }, "网格"), checkboxes("grids", info.grids.map((g) => [g.code, g.name])),
      el("div", { class: "muted" }, "群标签（只发给带这些标签的群）"), checkboxes("tags", info.tags.map((t) => [t, t]))),
    field("发布时间（空：立即）", el("input", { name: "publish_at", type: "datetime-local" })),
    field("截止时间", el("input", { name: "expires_at", type: "datetime-local" })),
  );
  const button = el("button", { type: "submit", id: "notice-submit" }, "发布");
  form.append(el("div", { class: "row wide" }, button));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const d = new FormData(form);
    const text = (k) => String(d.get(k) || "").trim() || null;
    const body = {
      title: text("title") || "", body: text("body") || "", link: text("link"), image_url: text("image_url"),
      target: { all: d.get("all") === "true", streets: d.getAll("streets"), communities: d.getAll("communities"), grids: d.getAll("grids"), tags: d.getAll("tags") },
      publish_at: text("publish_at"), expires_at: text("expires_at"),
    };
    attempt(button, async () => {
      const created = await api("/api/v1/notices", { method: "POST", body });
      toast(`已创建：${created.title}${created.queued ? "" : "（队列暂不可用，稍后自动发送）"}`);
      form.reset();
      await loadList();
      location.hash = String(created.id);
    });
  });
  return el("section", { class: "card", id: "compose" }, el("h2", {}, "发布惠民信息"), form);
}

function counts(deliveries) {
  const parts = Object.entries(deliveries).filter(([, n]) => n).map(([s, n]) => `${DELIVERY[s] || s} ${n}`);
  return parts.length ? parts.join("，") : "—";
}

async function loadList() {
  const notices = await api("/api/v1/notices?limit=100");
  clear($("#notice-rows"), notices.length ? notices.map((n) => {
    const tr = el("tr", { class: "clickable", dataset: { id: n.id } },
      el("td", {}, String(n.id)), el("td", {}, n.title), el("td", {}, STATUS[n.status] || n.status),
      el("td", { class: "opt" }, fmtTime(n.publish_at)), el("td", {}, counts(n.deliveries)));
    tr.addEventListener("click", () => { location.hash = String(n.id); });
    return tr;
  }) : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "还没有惠民信息")));
}

async function showNotice(id) {
  const panel = $("#notice-detail");
  if (!id) {
    clear(panel, el("p", { class: "muted" }, "点击一条信息查看各群发送情况"));
    return;
  }
  let n;
  try {
    n = await api(`/api/v1/notices/${encodeURIComponent(id)}`);
  } catch (err) {
    clear(panel, el("p", { class: "error" }, err.message));
    return;
  }
  const refresh = el("button", { type: "button", class: "secondary", id: "notice-refresh", onclick: () => Promise.all([loadList(), showNotice(id)]).catch((e) => toast(e.message, "error")) }, "刷新");
  const cancel = account.role === "admin" && ["scheduled", "sending"].includes(n.status)
    ? el("button", { type: "button", class: "danger", id: "notice-cancel" }, "撤回")
    : null;
  if (cancel) cancel.addEventListener("click", () => {
    if (!confirm("撤回后，还没发出的群不再发送。确定撤回？")) return;
    attempt(cancel, async () => {
      const r = await api(`/api/v1/notices/${n.id}/cancel`, { method: "POST" });
      toast(`已撤回，停止了 ${r.stopped} 个群的发送`);
      await loadList();
      await showNotice(id);
    });
  });
  clear(panel,
    el("h2", {}, n.title, " ", el("span", { class: "badge", id: "notice-status" }, STATUS[n.status] || n.status)),
    el("p", { class: "pre" }, n.body),
    el("dl", { class: "facts" },
      el("dt", {}, "发布人"), el("dd", {}, n.author),
      el("dt", {}, "发布时间"), el("dd", {}, fmtTime(n.publish_at)),
      n.expires_at ? [el("dt", {}, "截止时间"), el("dd", {}, fmtTime(n.expires_at))] : null,
      el("dt", {}, "发送情况"), el("dd", { id: "notice-counts" }, counts(n.deliveries))),
    el("div", { class: "row" }, refresh, cancel),
    el("h3", {}, "各群发送状态"),
    n.groups.length
      ? el("div", { class: "table-wrap" }, el("table", { id: "deliveries" },
          el("thead", {}, el("tr", {}, ["群", "状态", "尝试", "发送时间", "错误"].map((h) => el("th", {}, h)))),
          el("tbody", {}, n.groups.map((g) => el("tr", { dataset: { group: g.group_id, status: g.status } },
            el("td", {}, g.group_name), el("td", {}, DELIVERY[g.status] || g.status), el("td", {}, String(g.attempts)),
            el("td", {}, fmtTime(g.sent_at)), el("td", { class: "pre" }, g.last_error || ""))))))
      : el("p", { class: "muted" }, n.status === "scheduled" ? "到发布时间后开始发送" : "没有发送记录"),
  );
}

async function main() {
  account = await boot("notices");
  info = await meta();
  const app = $("#app");
  clear(app, el("h1", {}, "惠民信息"),
    account.role === "admin" ? composeSection() : null,
    el("div", { class: "split" },
      el("section", { class: "card table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, ["#", "标题", "状态", "发布时间", "发送情况"].map((h, i) => el("th", { class: i === 3 ? "opt" : null }, h)))),
        el("tbody", { id: "notice-rows" }))),
      el("section", { class: "card", id: "notice-detail", "aria-live": "polite" })));
  app.removeAttribute("aria-busy");
  window.addEventListener("hashchange", () => showNotice(location.hash.slice(1)));
  await loadList();
  await showNotice(location.hash.slice(1));
  document.body.dataset.ready = "1";
}

main().catch(() => {});
