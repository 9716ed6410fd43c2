// Charts drawn as inline SVG from the admin API's figures: spend over time stacked by series,
// ranked bars, and each budget's projection against its cap. Names reach the SVG only as text
// nodes and attribute values, as everywhere on the page.

const SVG = "http://www.w3.org/2000/svg";
// distinct on white and for most colour-blind readers (Okabe-Ito, then two greys)
export const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00",
  "#f0e442", "#000000", "#7f7f7f", "#bfbfbf"];
const OTHERS = "(others)";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function title(textValue) {
  return svg("title", {}, textValue);
}

// whole dollars past $100, cents past $1, else three significant digits ($0.000026)
const money = (n) => `$${n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2)
  : String(Number(n.toPrecision(3)))}`;

function legend(names) {
  const box = document.createElement("ul");
  box.className = "legend";
  names.forEach((name, i) => {
    const item = document.createElement("li");
    const swatch = svg("svg", { width: 10, height: 10, class: "swatch" },
      svg("rect", { width: 10, height: 10, fill: PALETTE[i % PALETTE.length] }));
    item.append(swatch, document.createTextNode(` ${name}`));
    box.append(item);
  });
  return box;
}

// At most `keep` series, the rest summed as one: a chart of forty colours says nothing.
export function fold(series, keep = PALETTE.length - 1) {
  if (series.length <= keep + 1) return series;
  const kept = series.slice(0, keep);
  const rest = series.slice(keep);
  const points = rest[0].points.map((p, i) => ({
    start: p.start, value: rest.reduce((sum, s) => sum + s.points[i].value, 0) }));
  return [...kept, { name: OTHERS, points }];
}

// Bars over time, one per interval, each stacked by series: series = [{name, points: [{start,
// value}]}], every series over the same intervals. `unit` formats a value.
export function stackedBars(series, { label, unit = money, width = 900, height = 220 } = {}) {
  const pad = { left: 64, right: 8, top: 10, bottom: 26 };
  const count = series.length ? series[0].points.length : 0;
  const totals = Array.from({ length: count }, (_, i) =>
    series.reduce((sum, s) => sum + s.points[i].value, 0));
  const top = Math.max(0, ...totals);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const slot = count ? plotW / count : plotW;
  const barW = Math.max(1, slot * 0.8);
  const chart = svg("svg", { class: "chart stacked", viewBox: `0 0 ${width} ${height}`,
    width, height, role: "img", "aria-label": label, "data-bars": 0, "data-max": top });
  chart.append(svg("rect", { class: "plot", x: pad.left, y: pad.top, width: plotW,
    height: plotH, fill: "#ffffff", stroke: "#d9dee7" }));
  chart.append(svg("text", { x: pad.left - 6, y: pad.top + 10, "text-anchor": "end",
    class: "axis" }, unit(top)));
  chart.append(svg("text", { x: pad.left - 6, y: pad.top + plotH, "text-anchor": "end",
    class: "axis" }, unit(0)));
  let bars = 0;
  for (let i = 0; i < count; i += 1) {
    let y = pad.top + plotH;
    series.forEach((s, k) => {
      const value = s.points[i].value;
      if (!(value > 0) || !(top > 0)) return;
      const h = Math.max(1, (value / top) * plotH);
      y -= h;
      bars += 1;
      chart.append(svg("rect", { class: "mark", x: pad.left + i * slot + (slot - barW) / 2, y,
        width: barW, height: h, fill: PALETTE[k % PALETTE.length], "data-series": s.name,
        "data-start": s.points[i].start, "data-value": value },
      title(`${s.name} · ${s.points[i].start}: ${unit(value)}`)));
    });
  }
  chart.setAttribute("data-bars", bars);
  if (count) {
    const first = series[0].points[0].start;
    const last = series[0].points[count - 1].start;
    chart.append(svg("text", { x: pad.left, y: height - 8, class: "axis" }, shortTime(first)));
    chart.append(svg("text", { x: width - pad.right, y: height - 8, "text-anchor": "end",
      class: "axis" }, shortTime(last)));
  }
  const wrap = document.createElement("div");
  wrap.className = "chart-wrap";
  wrap.append(chart, legend(series.map((s) => s.name)));
  return wrap;
}

const shortTime = (iso) => String(iso).replace("T", " ").replace(/:00(\.0+)?(Z|\+00:00)$/, " UTC");

// One horizontal bar per row, longest first: rows = [{name, value, note}].
export function rankedBars(rows, { label, unit = money, width = 640 } = {}) {
  const rowH = 22;
  const pad = { left: 180, right: 90 };
  const height = Math.max(1, rows.length) * rowH + 6;
  const top = Math.max(0, ...rows.map((r) => r.value));
  const plotW = width - pad.left - pad.right;
  const chart = svg("svg", { class: "chart ranked", viewBox: `0 0 ${width} ${height}`, width,
    height, role: "img", "aria-label": label, "data-bars": 0 });
  let bars = 0;
  rows.forEach((r, i) => {
    const y = 3 + i * rowH;
    const w = top > 0 ? Math.max(r.value > 0 ? 1 : 0, (r.value / top) * plotW) : 0;
    chart.append(svg("text", { x: pad.left - 6, y: y + 14, "text-anchor": "end", class: "name" },
      clip(r.name)));
    if (w > 0) {
      bars += 1;
      chart.append(svg("rect", { class: "mark", x: pad.left, y: y + 2, width: w, height: rowH - 6,
        fill: PALETTE[0], "data-name": r.name, "data-value": r.value },
      title(`${r.name}: ${unit(r.value)}${r.note ? ` · ${r.note}` : ""}`)));
    }
    chart.append(svg("text", { x: pad.left + w + 6, y: y + 14, class: "value" }, unit(r.value)));
  });
  chart.setAttribute("data-bars", bars);
  return chart;
}

const clip = (name) => (name.length > 28 ? `${name.slice(0, 27)}…` : name);

// Each budget: what is spent, where the period will end at its run rate, and the cap.
// budgets = [{name, spent, projected, cap, hard}].
export function projections(budgets, { label, width = 640 } = {}) {
  const rowH = 34;
  const pad = { left: 150, right: 150 };
  const height = Math.max(1, budgets.length) * rowH + 6;
  const plotW = width - pad.left - pad.right;
  const chart = svg("svg", { class: "chart projection", viewBox: `0 0 ${width} ${height}`,
    width, height, role: "img", "aria-label": label, "data-bars": 0 });
  let bars = 0;
  budgets.forEach((b, i) => {
    const y = 3 + i * rowH;
    const scale = Math.max(b.cap, b.projected, b.spent) || 1;
    const x = (v) => pad.left + (v / scale) * plotW;
    const over = b.projected > b.cap;
    chart.append(svg("text", { x: pad.left - 6, y: y + 18, "text-anchor": "end", class: "name" },
      b.name));
    chart.append(svg("rect", { x: pad.left, y: y + 6, width: plotW, height: 16,
      fill: "#eef1f6" }));
    const projectedW = x(b.projected) - pad.left;
    if (projectedW > 0) {
      bars += 1;
      chart.append(svg("rect", { class: `mark projected${over ? " over" : ""}`, x: pad.left,
        y: y + 6, width: projectedW, height: 16, fill: over ? "#f4b4ae" : "#b7cdf2",
        "data-value": b.projected }, title(`projected ${money(b.projected)}`)));
    }
    const spentW = x(b.spent) - pad.left;
    if (spentW > 0) {
      bars += 1;
      chart.append(svg("rect", { class: "mark spent", x: pad.left, y: y + 6, width: spentW,
        height: 16, fill: over ? "#b42318" : "#2457c5", "data-value": b.spent },
      title(`spent ${money(b.spent)}`)));
    }
    chart.append(svg("line", { class: "cap", x1: x(b.cap), x2: x(b.cap), y1: y + 2, y2: y + 26,
      stroke: "#1d2330", "stroke-width": 2 }, title(`cap ${money(b.cap)}`)));
    chart.append(svg("text", { x: width - pad.right + 8, y: y + 18, class: over ? "value over"
      : "value" }, `${money(b.projected)} of ${money(b.cap)}`));
  });
  chart.setAttribute("data-bars", bars);
  return chart;
}
