// Early warnings (预警): bursts of reports of one problem or one category in a community. Open ones first; a
// community lead (or an admin) acknowledges (确认: in hand) or closes (关闭: dealt with) each, with a note.
import { $, api, attempt, boot, clear, el, fmtTime, select, toast } from "./common.js";

const STATES = [["open", "待处理"], ["acknowledged", "已确认"], ["closed", "已关闭"]];
const STATE_NAMES = Object.fromEntries(STATES);
const RULES = { problem: "同一问题", category: "同类问题" };
let account;

const canAct = () => account.role === "admin" || (account.role === "worker" && account.worker_role === "lead");

function actions(w) {
  if (!canAct() || w.state === "closed") return null;
  const note = el("input", { name: "note", maxlength: 500, placeholder: "处理说明（可选）" });
  const act = (action, label, kind) => {
    const button = el("button", { type: "button", class: kind, dataset: { action } }, label);
    button.addEventListener("click", () => attempt(button, async () => {
      await api(`/api/v1/warnings/${w.id}/${action}`, { method: "POST", body: { note: note.value.trim() } });
      toast(`预警 #${w.id} ${label}`);
      await load();
    }));
    return button;
  };
  return el("div", { class: "row" }, note, w.state === "open" ? act("acknowledge", "确认", "secondary") : null, act("close", "关闭", null));
}

function card(w) {
  const handled = [
    w.acknowledged_at ? `${fmtTime(w.acknowledged_at)} ${w.acknowledged_by} 确认` : null,
    w.closed_at ? `${fmtTime(w.closed_at)} ${w.closed_by} 关闭` : null,
    w.note ? `说明：${w.note}` : null,
  ].filter(Boolean).join("；");
  return el("section", { class: "card", dataset: { id: w.id, state: w.state } },
    el("h2", {}, `#${w.id} ${w.community_name} · ${RULES[w.rule] || w.rule}：${w.summary} `,
      el("span", { class: `badge ${w.colour}` }, `${w.reports}条/${w.hours}小时`), " ",
      el("span", { class: `badge ${w.state === "open" ? "late" : "ok"}` }, STATE_NAMES[w.state] || w.state)),
    el("p", { class: "muted" }, `${fmtTime(w.warned_at)} 预警（首次 ${fmtTime(w.created_at)}）；涉及位置：${w.places.join("、") || "—"}`),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ["工单", "分类", "位置", "描述"].map((h) => el("th", {}, h)))),
      el("tbody", {}, w.tickets.map((t) => el("tr", {},
        el("td", {}, el("a", { href: `/console/tickets#${t.number}` }, t.number)), el("td", {}, t.category),
        el("td", {}, t.location), el("td", { class: "pre" }, t.description)))))),
    handled ? el("p", { class: "muted" }, handled) : null,
    actions(w));
}

async function load() {
  const state = $("#warning-state").value;
  const list = await api(`/api/v1/warnings${state ? `?state=${encodeURIComponent(state)}` : ""}`);
  clear($("#warning-list"), list.length ? list.map(card) : el("p", { class: "muted" }, "没有预警"));
}

async function main() {
  account = await boot("warnings");
  const app = $("#app");
  const state = select({ id: "warning-state" }, "全部", STATES, "open");
  state.addEventListener("change", () => load().catch((e) => toast(e.message, "error")));
  clear(app, el("h1", {}, "预警"),
    el("p", { class: "muted" }, "同一问题或同类问题短时间内集中反映时生成预警，并私信社区负责人；红色预警同步报送街道。"),
    el("div", { class: "row" }, el("label", { class: "field" }, el("span", {}, "状态"), state)),
    el("div", { id: "warning-list", "aria-live": "polite" }));
  app.removeAttribute("aria-busy");
  await load();
  document.body.dataset.ready = "1";
}

main().catch(() => {});
