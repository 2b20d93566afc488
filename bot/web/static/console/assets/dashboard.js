// The dashboard: a period's figures from GET /api/v1/stats as cards and inline-SVG charts, and the weekly XLSX
// report (GET /api/v1/reports/weekly) for download.
import { $, api, boot, clear, el, field, fmtRate, meta, select, toast } from "./common.js";
import { PALETTE, barChart, stackedColumns } from "./charts.js";

let info;

function isoDay(date) {
  return new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Shanghai" }).format(date);
}

function isoWeek(date) {
  const d = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const yearStart = new Date(Date.UTC(d.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((d - yearStart) / 86400000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

// A colour square for the legend; set through the CSSOM, which the page's CSP allows (style attributes it does not).
function swatch(colour) {
  const mark = el("i");
  mark.style.background = colour;
  return mark;
}

function card(title, ...children) {
  return el("section", { class: "card" }, el("h3", {}, title), children);
}

function kpi(label, value, id) {
  return el("div", { class: "kpi", id }, el("b", {}, value), el("span", {}, label));
}

async function load() {
  const d = new FormData($("#period"));
  const params = new URLSearchParams();
  for (const key of ["from", "to", "grid"]) if (d.get(key)) params.set(key, d.get(key));
  let s;
  try {
    s = await api(`/api/v1/stats?${params}`);
  } catch (err) {
    toast(err.message, "error");
    return;
  }
  const colourOf = Object.fromEntries(info.categories.map((c, i) => [c.name, PALETTE[i % PALETTE.length]]));
  const weeks = s.by_week.map((w) => w.week);
  const used = [...new Set(s.by_category_week.map((x) => x.category))];
  const series = used.map((name) => ({
    name, colour: colourOf[name] || "#999",
    values: Object.fromEntries(s.by_category_week.filter((x) => x.category === name).map((x) => [x.week, x.count])),
  }));
  clear($("#figures"),
    el("div", { class: "kpis" },
      kpi("受理工单", String(s.total), "kpi-total"),
      kpi("按时办结率", fmtRate(s.on_time_rate), "kpi-on-time"),
      kpi("满意率", fmtRate(s.satisfaction_rate), "kpi-satisfaction"),
      kpi("当前超期", String(s.overdue_now), "kpi-overdue"),
      kpi("平均办理（小时）", s.average_handling_hours === null ? "—" : s.average_handling_hours.toFixed(1), "kpi-hours")),
    el("div", { class: "charts" },
      card("每周工单量（按分类）", stackedColumns(weeks, series, { title: "每周工单量" }),
        el("div", { class: "legend" }, series.map((x) => el("span", {}, swatch(x.colour), x.name)))),
      card("分类", barChart(s.by_category.map((c) => ({ label: c.category, value: c.count, colour: colourOf[c.category] })), { title: "分类" })),
      card("网格", barChart(s.by_grid.map((g) => ({ label: g.grid_name, value: g.count })), { title: "网格" })),
      card("办结与评价", barChart([
        { label: "已办结", value: s.resolved },
        { label: "按时办结", value: s.resolved_on_time, colour: PALETTE[2] },
        ...s.by_rating.map((r, i) => ({ label: r.rating, value: r.count, colour: [PALETTE[2], PALETTE[1], PALETTE[3]][i] || PALETTE[4] })),
        { label: "当前超期", value: s.overdue_now, colour: PALETTE[3] },
      ], { title: "办结与评价" }))),
    card("高发问题（按网格）", s.recurring_by_grid.length
      ? el("div", { class: "table-wrap" }, el("table", { id: "recurring" },
          el("thead", {}, el("tr", {}, ["网格", "分类", "位置", "次数", "问题", "周数"].map((h) => el("th", {}, h)))),
          el("tbody", {}, s.recurring_by_grid.map((r) => el("tr", {}, el("td", {}, r.grid_name), el("td", {}, r.category), el("td", {}, r.location), el("td", {}, String(r.count)),
            el("td", {}, r.summary || ""), el("td", { title: (r.weeks || []).map((w) => `${w.week}: ${w.count}`).join("，") }, String((r.weeks || []).length)))))))
      : el("p", { class: "muted" }, "这段时间没有同一地点反复出现的问题")));
}

async function main() {
  const account = await boot("dashboard");
  info = await meta();
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86400000);
  const grids = info.grids.filter((g) => account.role !== "worker" || account.grids.includes(g.code)).map((g) => [g.code, g.name]);
  const period = el("form", { id: "period", class: "filters card" },
    field("从", el("input", { type: "date", name: "from", value: isoDay(monthAgo) })),
    field("到", el("input", { type: "date", name: "to", value: isoDay(today) })),
    field("网格", select({ name: "grid" }, "全部", grids)),
    el("button", { type: "submit" }, "统计"));
  period.addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  const week = el("input", { type: "week", name: "week", id: "report-week", value: isoWeek(today), required: true });
  const reportGrid = select({ name: "grid" }, "全部网格", grids);
  const download = el("a", { id: "report-download", class: "button", href: "#" }, "下载周报（Excel）");
  const updateLink = () => {
    const params = new URLSearchParams({ week: week.value });
    if (reportGrid.value) params.set("grid", reportGrid.value);
    download.href = `/api/v1/reports/weekly?${params}`;
  };
  week.addEventListener("change", updateLink);
  reportGrid.addEventListener("change", updateLink);
  updateLink();
  const app = $("#app");
  clear(app, el("h1", {}, "统计"), period, el("div", { id: "figures" }),
    el("section", { class: "card row", id: "report" }, field("周次", week), field("范围", reportGrid), download));
  app.removeAttribute("aria-busy");
  await load();
  document.body.dataset.ready = "1";
}

main().catch(() => {});
