// The knowledge editor (admins): search entries, edit with optimistic versions, history, import/export, and the
// questions residents asked that it could not answer well. Every account may hit-test: what would the bot say?
import { $, api, attempt, boot, clear, el, field, fmtTime, meta, select, toast } from "./common.js";

const SCOPES = [["district", "全区"], ["street", "街道"], ["community", "社区"]];
const CHANGES = { created: "创建", updated: "修改", deleted: "删除" };
let account;
let info;
let editing = null; // the entry in the form (null: a new one)

const lines = (value) => String(value || "").split("\n").map((s) => s.trim()).filter(Boolean);

function section(title, id, ...children) {
  return el("section", { class: "card", id }, el("h2", {}, title), children);
}

// --- hit test ---------------------------------------------------------------------------------------------

function hitTestSection() {
  const groups = el("select", { name: "group_id" }, el("option", { value: "" }, "私聊（仅全区条目）"));
  api("/api/v1/groups").then((data) => {
    for (const g of data.groups) groups.append(el("option", { value: g.id }, g.name));
  }).catch(() => {});
  const query = el("input", { name: "query", id: "hit-query", required: true, maxlength: 500, placeholder: "例如：高龄补贴怎么申请" });
  const button = el("button", { type: "submit", id: "hit-submit" }, "测试");
  const out = el("div", { id: "hit-result" });
  const asked = field("居民的问题", query);
  asked.classList.add("grow");
  const form = el("form", { class: "row" }, asked, field("在哪个群问", groups), button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(button, async () => {
      const result = await api("/api/v1/knowledge/search", { method: "POST", body: { query: query.value, group_id: groups.value || null } });
      clear(
        out,
        el("p", {}, result.answered ? el("span", { class: "badge ok" }, "机器人会回答") : el("span", { class: "badge late" }, "机器人不回答，转网格员"), " ", el("span", { class: "muted" }, result.mode)),
        result.hits.length
          ? el("div", { class: "table-wrap" }, el("table", {},
              el("thead", {}, el("tr", {}, ["条目", "得分", "匹配的问法", "回答", "来源"].map((h) => el("th", {}, h)))),
              el("tbody", {}, result.hits.map((h) => el("tr", {},
                el("td", {}, h.title, el("br"), el("small", { class: "muted" }, h.external_id)),
                el("td", {}, h.score.toFixed(2)),
                el("td", {}, h.matched),
                el("td", { class: "pre" }, h.answer),
                el("td", {}, [h.source.office, h.source.document, h.source.date].filter(Boolean).join(" ")),
              )))))
          : el("p", { class: "muted" }, "没有候选条目"),
      );
    });
  });
  return section("命中测试", "hit-test", form, out);
}

// --- entries ----------------------------------------------------------------------------------------------

function entriesSection() {
  const q = el("input", { name: "q", id: "entry-search", placeholder: "按标题搜索", maxlength: 256 });
  const search = el("form", { class: "row" }, field("标题包含", q), el("button", { type: "submit" }, "搜索"),
    el("button", { type: "button", class: "secondary", id: "entry-new", onclick: () => edit(null) }, "新建条目"));
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    loadEntries(q.value.trim());
  });
  return section("知识条目", "entries", search,
    el("div", { class: "split" },
      el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ["标题", "版本", "修改人", "修改时间"].map((h) => el("th", {}, h)))), el("tbody", { id: "entry-rows" })), el("div", { class: "row", id: "entry-pager" })),
      el("div", { id: "editor" }, el("p", { class: "muted" }, "点击条目编辑"))));
}

const PAGE = 15;
let entryOffset = 0;

async function loadEntries(q = "", offset = 0) {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  if (q) params.set("q", q);
  const page = await api(`/api/v1/knowledge/entries?${params}`);
  entryOffset = offset;
  const pager = $("#entry-pager");
  clear(pager, el("span", { class: "muted" }, `共 ${page.total} 条，第 ${page.total ? offset + 1 : 0}–${offset + page.items.length} 条`),
    el("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => loadEntries(q, Math.max(0, offset - PAGE)) }, "上一页"),
    el("button", { type: "button", class: "secondary", disabled: offset + PAGE >= page.total, onclick: () => loadEntries(q, offset + PAGE) }, "下一页"));
  clear($("#entry-rows"), page.items.map((e) => {
    const tr = el("tr", { class: "clickable", dataset: { id: e.id } },
      el("td", {}, e.title), el("td", {}, `v${e.version}`), el("td", {}, e.updated_by), el("td", {}, fmtTime(e.updated_at)));
    tr.addEventListener("click", () => edit(e));
    return tr;
  }));
}

function input(name, value, attrs = {}) {
  return el("input", { name, value: value ?? "", ...attrs });
}

function edit(entry) {
  editing = entry;
  const e = entry || { title: "", questions: [], answer: "", source: {}, scope: "district", scope_code: "", tags: [] };
  const regions = info.regions.map((r) => [r.code, `${r.name}（${r.code}）`]);
  const form = el("form", { id: "entry-form", class: "row" },
    field("编号", input("external_id", e.external_id, { required: true, readonly: Boolean(entry), maxlength: 128 })),
    el("label", { class: "field wide" }, el("span", {}, "标题"), input("title", e.title, { required: true, maxlength: 256 })),
    el("label", { class: "field wide" }, el("span", {}, "其他问法（每行一个）"), el("textarea", { name: "questions", rows: 3, value: e.questions.join("\n") })),
    el("label", { class: "field wide" }, el("span", {}, "回答"), el("textarea", { name: "answer", rows: 5, required: true, value: e.answer })),
    field("来源文件", input("document", e.source.document, { required: true })),
    field("发布单位", input("office", e.source.office)),
    field("来源链接", input("url", e.source.url, { type: "url" })),
    field("发布日期", input("date", e.source.date, { type: "date" })),
    field("适用范围", select({ name: "scope" }, null, SCOPES, e.scope)),
    field("地区", select({ name: "scope_code", required: true }, "请选择", regions, e.scope_code)),
    field("标签（逗号分隔）", input("tags", e.tags.join("，"))),
    field("生效日期", input("effective_from", e.effective_from, { type: "date" })),
    field("失效日期", input("expires_on", e.expires_on, { type: "date" })),
  );
  const save = el("button", { type: "submit", id: "entry-save" }, entry ? `保存（当前 v${entry.version}）` : "创建");
  form.append(el("div", { class: "row wide" }, save,
    entry ? el("button", { type: "button", class: "danger", id: "entry-delete", onclick: (ev) => remove(ev.target) }, "删除") : null));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(save, () => saveEntry(form));
  });
  clear($("#editor"), el("h3", {}, entry ? `编辑：${entry.title}` : "新建条目"), form, el("div", { id: "history" }));
  if (entry) loadHistory(entry.id);
}

async function saveEntry(form) {
  const d = new FormData(form);
  const text = (k) => String(d.get(k) || "").trim();
  const body = {
    external_id: text("external_id"), title: text("title"), questions: lines(d.get("questions")), answer: text("answer"),
    source: { document: text("document"), office: text("office") || null, url: text("url") || null, date: text("date") || null },
    scope: text("scope"), scope_code: text("scope_code"),
    tags: text("tags").split(/[,，]/).map((s) => s.trim()).filter(Boolean),
    effective_from: text("effective_from") || null, expires_on: text("expires_on") || null,
  };
  const saved = editing
    ? await api(`/api/v1/knowledge/entries/${editing.id}`, { method: "PUT", body: { ...body, version: editing.version } })
    : await api("/api/v1/knowledge/entries", { method: "POST", body });
  toast(saved.changed ? `已保存：${saved.title}（v${saved.version}）` : "内容没有变化");
  edit(saved);
  loadEntries($("#entry-search").value.trim(), entryOffset);
}

async function remove(button) {
  if (!editing || !confirm(`删除“${editing.title}”？历史记录会保留。`)) return;
  await attempt(button, async () => {
    await api(`/api/v1/knowledge/entries/${editing.id}?version=${editing.version}`, { method: "DELETE" });
    toast("已删除");
    clear($("#editor"), el("p", { class: "muted" }, "已删除"));
    editing = null;
    loadEntries();
  });
}

async function loadHistory(id) {
  const revisions = await api(`/api/v1/knowledge/entries/${id}/history`);
  clear($("#history"), el("h3", {}, "修改历史"), el("ol", { class: "timeline", id: "history-list" }, revisions.slice().reverse().map((r) =>
    el("li", {},
      el("div", {}, el("b", {}, `v${r.version} ${CHANGES[r.change] || r.change}`), " ", el("span", { class: "muted" }, `${r.updated_by} ${fmtTime(r.updated_at)}`)),
      el("details", {}, el("summary", {}, "当时的回答"), el("div", { class: "pre" }, r.snapshot.answer || ""))))));
}

// --- import / export ----------------------------------------------------------------------------------------

function filesSection() {
  const file = el("input", { type: "file", name: "file", id: "import-file", accept: ".yml,.yaml,.csv,.xlsx", required: true });
  const dry = el("input", { type: "checkbox", name: "dry_run", value: "true", checked: true });
  const button = el("button", { type: "submit" }, "导入");
  const out = el("div", { id: "import-result" });
  const form = el("form", { class: "row" }, field("文件（YAML / CSV / XLSX，最大 5 MB）", file),
    el("label", {}, dry, " 只检查，不写入"), button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(button, async () => {
      try {
        const r = await api("/api/v1/knowledge/import", { method: "POST", form: new FormData(form) });
        clear(out, el("p", {}, `${r.dry_run ? "检查通过（未写入）" : "已导入"}：新增 ${r.created}，修改 ${r.updated}，不变 ${r.unchanged}`));
        if (!r.dry_run) loadEntries();
      } catch (err) {
        const rows = (err.detail && err.detail.errors) || [];
        clear(out, el("p", { class: "error" }, err.message), rows.length ? el("ul", {}, rows.map((x) => el("li", {}, `第 ${x.row ?? "-"} 行 ${x.field ?? ""}：${x.reason}`))) : null);
      }
    });
  });
  const exports = ["yaml", "csv", "xlsx"].map((f) => el("a", { href: `/api/v1/knowledge/export?format=${f}`, download: "" }, `导出 ${f.toUpperCase()}`));
  return section("导入 / 导出", "files", form, out, el("p", { class: "row" }, exports));
}

// --- residents' questions -------------------------------------------------------------------------------

function questionsSection() {
  const tabs = el("div", { class: "tabs", role: "tablist" });
  const body = el("div", { id: "question-list" });
  const show = async (kind) => {
    for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.kind === kind));
    const rows = await api(`/api/v1/knowledge/questions?kind=${kind}`);
    clear(body, rows.length ? el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ["时间", "居民", "问题", "工单", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((q) => {
        const done = el("button", { type: "button", class: "secondary" }, "已处理");
        done.addEventListener("click", () => attempt(done, async () => {
          await api(`/api/v1/knowledge/questions/${q.id}/handled`, { method: "POST" });
          toast("已标记为已处理");
          show(kind);
        }));
        return el("tr", {}, el("td", {}, fmtTime(q.asked_at)), el("td", {}, q.asker_name), el("td", { class: "pre" }, q.question),
          el("td", {}, q.ticket_number || ""), el("td", {}, done));
      })))) : el("p", { class: "muted" }, "没有待处理的问题"));
  };
  for (const [kind, label] of [["unanswered", "没答上的问题"], ["unhelpful", "居民说没用的回答"]]) {
    tabs.append(el("button", { type: "button", role: "tab", dataset: { kind }, onclick: () => show(kind).catch((e) => toast(e.message, "error")) }, label));
  }
  show("unanswered").catch((e) => toast(e.message, "error"));
  return section("居民的问题", "questions", tabs, body);
}

async function main() {
  account = await boot("knowledge");
  info = await meta();
  const app = $("#app");
  const admin = account.role === "admin";
  clear(app, el("h1", {}, "知识库"), hitTestSection(), admin ? [entriesSection(), questionsSection(), filesSection()] : el("p", { class: "muted" }, "条目编辑、导入导出和问题清单仅管理员可用。"));
  app.removeAttribute("aria-busy");
  if (admin) await loadEntries();
  document.body.dataset.ready = "1";
}

main().catch(() => {});
