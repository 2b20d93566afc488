// Groups and grids: channel health, which grid each chat group belongs to, its tags, and its bot settings
// (own trigger prefixes, confidence to answer unasked, quiet hours). Admins edit; others read.
import { $, api, attempt, boot, clear, el, field, fmtTime, meta, select, toast } from "./common.js";
import { ilinkSection } from "./ilink.js";

const CHANNELS = [["webchat", "网页聊天"], ["wechaty", "微信（wechaty）"], ["wecom", "企业微信"], ["wecom_aibot", "企业微信智能机器人"]];
const HEALTH = { up: "正常", connecting: "连接中", down: "断开" };
let account;
let info;
let defaults;

const hhmm = (t) => (t ? String(t).slice(0, 5) : "");

async function channelsSection() {
  const body = el("tbody");
  const box = el("section", { class: "card table-wrap", id: "channels" }, el("h2", {}, "渠道状态"),
    el("table", {}, el("thead", {}, el("tr", {}, ["渠道", "账号", "状态", "说明", "自", "待发", "失败"].map((h) => el("th", {}, h)))), body));
  try {
    const channels = await api("/api/v1/channels");
    clear(body, channels.map((c) => el("tr", {},
      el("td", {}, c.name), el("td", {}, c.account),
      el("td", {}, el("span", { class: `badge ${c.status === "up" ? "ok" : "late"}` }, HEALTH[c.status] || c.status)),
      el("td", { class: "pre" }, c.detail), el("td", {}, fmtTime(c.since)), el("td", {}, String(c.pending)), el("td", {}, String(c.failed)))));
  } catch (err) {
    clear(body, el("tr", {}, el("td", { colspan: 7, class: "error" }, err.message)));
  }
  return box;
}

function groupRow(g) {
  const s = g.settings;
  const quiet = s.quiet_start ? `${hhmm(s.quiet_start)}–${hhmm(s.quiet_end)}` : "—";
  const tr = el("tr", { class: account.role === "admin" ? "clickable" : null, dataset: { id: g.id } },
    el("td", {}, g.name, el("br"), el("small", { class: "muted" }, g.id)),
    el("td", {}, g.grid_name), el("td", { class: "opt" }, (CHANNELS.find(([c]) => c === g.channel) || [0, g.channel])[1]),
    el("td", {}, g.tags.join("，") || "—"),
    el("td", { class: "opt" }, s.prefixes.join(" ") || "—"),
    el("td", { class: "opt" }, s.request_confidence ?? `默认 ${defaults.default_confidence}`),
    el("td", { class: "opt" }, quiet));
  if (account.role === "admin") tr.addEventListener("click", () => editGroup(g));
  return tr;
}

async function loadGroups() {
  defaults = await api("/api/v1/groups");
  clear($("#group-rows"), defaults.groups.map(groupRow));
}

function editGroup(g) {
  const isNew = !g;
  g = g || { id: "", name: "", grid_code: "", channel: "webchat", tags: [], settings: { prefixes: [], request_confidence: null, quiet_start: null, quiet_end: null } };
  const mapForm = el("form", { class: "row", id: "group-form" },
    field("群 ID", el("input", { name: "id", value: g.id, required: true, readonly: !isNew, maxlength: 128 })),
    field("群名称", el("input", { name: "name", value: g.name, required: true, maxlength: 128 })),
    field("所属网格", select({ name: "grid_code", required: true }, "请选择", info.grids.map((x) => [x.code, x.name]), g.grid_code)),
    field("平台", select({ name: "channel" }, null, CHANNELS, g.channel)),
    field("标签（逗号分隔）", el("input", { name: "tags", value: g.tags.join("，") })));
  const mapButton = el("button", { type: "submit" }, isNew ? "添加" : "保存绑定");
  mapForm.append(mapButton);
  mapForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const d = new FormData(mapForm);
    const body = { name: String(d.get("name")).trim(), grid_code: d.get("grid_code"), channel: d.get("channel"),
      tags: String(d.get("tags")).split(/[,，]/).map((t) => t.trim()).filter(Boolean) };
    attempt(mapButton, async () => {
      const saved = await api(`/api/v1/groups/${encodeURIComponent(String(d.get("id")).trim())}`, { method: "PUT", body });
      toast(`已保存：${saved.name} → ${saved.grid_name}`);
      await loadGroups();
      editGroup(saved);
    });
  });
  const s = g.settings;
  const setForm = el("form", { class: "row", id: "settings-form" },
    field("本群唤醒词（空格分隔）", el("input", { name: "prefixes", value: s.prefixes.join(" ") }), `全局：${defaults.default_prefixes.join(" ")}`),
    field("主动回答的把握（0–1）", el("input", { name: "request_confidence", type: "number", min: 0, max: 1, step: 0.01, value: s.request_confidence ?? "" }), `空：默认 ${defaults.default_confidence}`),
    field("免打扰开始", el("input", { name: "quiet_start", type: "time", value: hhmm(s.quiet_start) })),
    field("免打扰结束", el("input", { name: "quiet_end", type: "time", value: hhmm(s.quiet_end) })));
  const setButton = el("button", { type: "submit" }, "保存设置");
  setForm.append(setButton);
  setForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const d = new FormData(setForm);
    const confidence = String(d.get("request_confidence")).trim();
    const body = { prefixes: String(d.get("prefixes")).split(/\s+/).filter(Boolean), request_confidence: confidence === "" ? null : Number(confidence),
      quiet_start: d.get("quiet_start") || null, quiet_end: d.get("quiet_end") || null };
    attempt(setButton, async () => {
      const saved = await api(`/api/v1/groups/${encodeURIComponent(g.id)}/settings`, { method: "PUT", body });
      toast(`已保存 ${saved.name} 的机器人设置`);
      await loadGroups();
    });
  });
  clear($("#group-editor"), el("h3", {}, isNew ? "添加群" : `编辑：${g.name}`), mapForm,
    isNew ? null : [el("h3", {}, "机器人设置"), setForm]);
}

function gridsSection() {
  const community = (code) => (info.regions.find((r) => r.code === code) || {}).name || code;
  return el("section", { class: "card table-wrap", id: "grids" }, el("h2", {}, "网格与网格员"),
    el("table", {}, el("thead", {}, el("tr", {}, ["网格", "社区", "网格员"].map((h) => el("th", {}, h)))),
      el("tbody", {}, info.grids.map((g) => el("tr", {}, el("td", {}, g.name, el("br"), el("small", { class: "muted" }, g.code)),
        el("td", {}, community(g.community_code)),
        el("td", {}, info.workers.filter((w) => w.grid_code === g.code).map((w) => `${w.name}${w.role === "lead" ? "（负责人）" : ""}${w.on_duty ? "" : "（不在岗）"}`).join("，")))))));
}

async function main() {
  account = await boot("groups");
  info = await meta();
  const app = $("#app");
  const admin = account.role === "admin";
  clear(app, el("h1", {}, "群与网格"), await channelsSection(), await ilinkSection(account, info),
    el("section", { class: "card" }, el("h2", {}, "群", admin ? [" ", el("button", { type: "button", class: "secondary", id: "group-new", onclick: () => editGroup(null) }, "添加群")] : null),
      el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {},
        ["群", "网格", "平台", "标签", "唤醒词", "把握", "免打扰"].map((h, i) => el("th", { class: [2, 4, 5, 6].includes(i) ? "opt" : null }, h)))),
        el("tbody", { id: "group-rows" }))),
      el("div", { id: "group-editor" }, admin ? el("p", { class: "muted" }, "点击一个群修改绑定和机器人设置") : null)),
    gridsSection());
  app.removeAttribute("aria-busy");
  await loadGroups();
  document.body.dataset.ready = "1";
}

main().catch(() => {});
