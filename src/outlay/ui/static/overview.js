// The overview's charts: spend over time stacked by vendor or model, refusals over time by
// code, this period's projection against each global cap, and the workflows and runs that
// spent most, from the series, usage and report answers of the admin API.

import { $, api, el, when } from "./dom.js";
import { fold, projections, rankedBars, stackedBars } from "./charts.js";

const TOP_ROWS = 10;  // workflows and runs charted

// Each chart's figures, or the error that kept it from loading: one failing does not blank
// the others.
export async function loadCharts({ interval, split }) {
  const got = (path) => api(path).catch((err) => ({ error: err.message }));
  const [spend, refusals, workflows, runs] = await Promise.all([
    got(`/reports/series?scope=global&interval=${interval}&split=${split}`),
    got(`/reports/series?scope=global&interval=${interval}&split=code`),
    got("/reports?group_by=label:workflow"), got("/reports?group_by=label:run")]);
  return { interval, spend, refusals, workflows, runs };
}

// One series per value of the split, those with nothing left out, the smallest folded.
function seriesOf(answer, figure) {
  const by = answer.split;
  return fold((answer.series || [])
    .map((s) => ({ name: s[by] === null || s[by] === "" ? "(none)" : String(s[by]),
      points: s.points.map((p) => ({ start: p.start, value: Number(p[figure]) || 0 })) }))
    .filter((s) => s.points.some((p) => p.value > 0)));
}

function chartOr(answer, draw, empty) {
  if (answer.error) return el("p", { className: "error" }, answer.error);
  const drawn = draw(answer);
  return drawn || el("p", { className: "empty" }, empty);
}

export function drawCharts({ interval, spend, refusals, workflows, runs }, global) {
  const span = interval === "day" ? "the last 30 days" : "the last 24 hours";
  $("chart-spend").replaceChildren(chartOr(spend, (a) => {
    const series = seriesOf(a, "cost_usd");
    return series.length ? stackedBars(series, { label: `Spend per ${interval} by ${a.split}` })
      : null;
  }, `No spend in ${span}.`));
  $("chart-refusals").replaceChildren(chartOr(refusals, (a) => {
    const series = seriesOf(a, "refused");
    return series.length ? stackedBars(series, { label: `Refusals per ${interval} by code`,
      unit: (n) => String(Math.round(n)) }) : null;
  }, `No refusals in ${span}.`));
  const budgets = ((global && global.budgets) || []).map((b) => ({
    name: `${b.period} · ${b.mode}`, spent: Number(b.spent_usd), cap: Number(b.cap_usd),
    projected: Number(b.projected_usd ?? b.spent_usd), exhausted: b.exhausted_at }));
  const exhausted = budgets.filter((b) => b.exhausted).map((b) => el("p",
    { className: "exhausted", role: "alert" }, `At this rate the ${b.name} cap is reached at ${when(b.exhausted)}.`));
  if (global && global.exhausted_at && !exhausted.length) {
    exhausted.push(el("p", { className: "exhausted", role: "alert" },
      `At this rate a hard cap is reached at ${when(global.exhausted_at)}.`));
  }
  $("chart-projection").replaceChildren(...(budgets.length
    ? [projections(budgets, { label: "Projected spend against each global cap" }), ...exhausted]
    : [el("p", { className: "empty" }, "No global budgets: set one under Policies.")]));
  const ranked = (answer, field) => chartOr(answer, (a) => {
    const rows = a.rows.filter((r) => r[field] !== null && r[field] !== "")
      .slice(0, TOP_ROWS).map((r) => ({ name: String(r[field]), value: Number(r.cost_usd),
        note: `${r.requests} calls, ${r.refused} refused` }));
    return rows.length ? rankedBars(rows, { label: `Spend by ${field}` }) : null;
  }, `No calls carry ${field} yet (X-Outlay-Tags or a key's labels).`);
  $("chart-workflows").replaceChildren(ranked(workflows, "label:workflow"));
  $("chart-runs").replaceChildren(ranked(runs, "label:run"));
}
