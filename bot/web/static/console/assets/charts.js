// Small inline-SVG charts (no library, nothing fetched from a CDN): horizontal bars and stacked weekly columns.
// Labels go in as text nodes, like everything else on the console.
const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#0b6bcb", "#e07b00", "#2e7d32", "#c62828", "#6a1b9a", "#00838f", "#8d6e63", "#5c6bc0", "#9e9d24", "#d81b60", "#546e7a"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// items: [{label, value, text?}] → one bar per item, longest first as given.
export function barChart(items, { title, format = (v) => String(v), colour = PALETTE[0] } = {}) {
  const rowHeight = 22;
  const labelWidth = 120;
  const width = 480;
  const height = Math.max(items.length, 1) * rowHeight + 8;
  const max = Math.max(1, ...items.map((i) => i.value));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title || "" });
  items.forEach((item, index) => {
    const y = index * rowHeight + 4;
    const barWidth = ((width - labelWidth - 60) * item.value) / max;
    root.append(svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end" }, item.label.length > 9 ? item.label.slice(0, 9) + "…" : item.label));
    root.append(svg("rect", { x: labelWidth, y: y + 2, width: Math.max(barWidth, item.value ? 2 : 0), height: rowHeight - 6, fill: item.colour || colour, rx: 2 }));
    root.append(svg("text", { x: labelWidth + barWidth + 4, y: y + 14 }, item.text ?? format(item.value)));
  });
  if (!items.length) root.append(svg("text", { x: 8, y: 18 }, "暂无数据"));
  return root;
}

// weeks: ["2026-W47", …]; series: [{name, colour, values: {week: count}}] → stacked columns per week.
export function stackedColumns(weeks, series, { title } = {}) {
  const width = 480;
  const height = 220;
  const left = 30;
  const bottom = 36;
  const totals = weeks.map((w) => series.reduce((sum, s) => sum + (s.values[w] || 0), 0));
  const max = Math.max(1, ...totals);
  const slot = (width - left - 10) / Math.max(weeks.length, 1);
  const barWidth = Math.min(40, slot * 0.7);
  const scale = (height - bottom - 10) / max;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title || "" });
  root.append(svg("line", { x1: left, y1: height - bottom, x2: width - 5, y2: height - bottom, stroke: "#999" }));
  root.append(svg("text", { x: left - 4, y: 18, "text-anchor": "end" }, String(max)));
  root.append(svg("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, "0"));
  weeks.forEach((week, i) => {
    const x = left + i * slot + (slot - barWidth) / 2;
    let y = height - bottom;
    for (const s of series) {
      const value = s.values[week] || 0;
      if (!value) continue;
      const h = value * scale;
      y -= h;
      const rect = svg("rect", { x, y, width: barWidth, height: h, fill: s.colour });
      rect.append(svg("title", {}, `${week} ${s.name}：${value}`));
      root.append(rect);
    }
    root.append(svg("text", { x: x + barWidth / 2, y: y - 3, "text-anchor": "middle" }, String(totals[i])));
    root.append(svg("text", { x: x + barWidth / 2, y: height - bottom + 14, "text-anchor": "middle" }, week.slice(5)));
  });
  return root;
}
