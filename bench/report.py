"""The run's figures as a markdown table (absolute numbers and ratios), the bar, and a chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from load import StreamResult
from measure import WrkResult, median

LEVELS = (1, 32)
# The bar of the issue, measured as ratios within one run, one worker each.
BAR_THROUGHPUT = 0.85  # Outlay's req/s at 32 connections over the pass-through's
BAR_THROUGHPUT_REDIS_PG = 0.65  # the same, for Outlay on Redis + PostgreSQL
BAR_OVER_FLOOR_P50_MS = 0.15  # Outlay's p50 at 1 connection minus the pass-through's
BAR_OVER_PORTKEY = 3.0  # Outlay's req/s at 32 connections over Portkey's gateway's
BAR_PORTKEY_ADDED = 0.5  # Outlay's p50 added over direct at 1 connection, over Portkey's
BAR_TTFB_MS = 0.5  # Outlay's stream time to first chunk minus the pass-through's
# Growth: the seeded store against the small one. Runs on this machine vary by a few
# percent between rounds; a call that cost more with the store's size would show past this.
GROWTH_THROUGHPUT = 0.90
GROWTH_P50_MS = 0.1


@dataclass
class Row:
    key: str
    title: str
    about: str
    outlay: bool = False
    runs: dict[int, list[WrkResult]] = field(default_factory=dict)
    # CPU time of the gateway's process tree per answered call, µs, one entry per run
    cpu: dict[int, list[float]] = field(default_factory=dict)
    stream: StreamResult | None = None
    peak_rss: int | None = None
    reason: str | None = None  # why it did not run
    notes: list[str] = field(default_factory=list)

    def rps(self, c: int) -> float | None:
        runs = self.runs.get(c)
        return median([r.rps for r in runs]) if runs else None

    def p50(self, c: int) -> float | None:
        runs = self.runs.get(c)
        return median([r.p50_ms for r in runs]) if runs else None

    def p99(self, c: int) -> float | None:
        runs = self.runs.get(c)
        return median([r.p99_ms for r in runs]) if runs else None

    def cpu_us(self, c: int) -> float | None:
        runs = self.cpu.get(c)
        return median(runs) if runs else None

    def bad_answers(self) -> int:
        return sum(r.errors + r.non_2xx for runs in self.runs.values() for r in runs)


def _num(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{100 * a / b:.0f}%"


def _delta(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a - b:+.2f} ms"


def figures_table(rows: list[Row]) -> str:
    head = ("| Scenario | req/s @1 | p50 @1 | p99 @1 | req/s @32 | p50 @32 | p99 @32 "
            "| CPU per call @32 | stream TTFB p50 | TTFB p99 | peak RSS |")
    out = [head, "|---|" + "---:|" * 10]
    for r in rows:
        if r.reason is not None:
            out.append(f"| {r.title} | not available | | | | | | | | | |")
            continue
        s = r.stream
        out.append(
            f"| {r.title} | {_num(r.rps(1))} | {_num(r.p50(1), 2, ' ms')} | "
            f"{_num(r.p99(1), 2, ' ms')} | {_num(r.rps(32))} | {_num(r.p50(32), 2, ' ms')} | "
            f"{_num(r.p99(32), 2, ' ms')} | {_num(r.cpu_us(32), 0, ' µs')} | "
            f"{_num(s and s.ttfb_p50_ms, 2, ' ms')} | "
            f"{_num(s and s.ttfb_p99_ms, 2, ' ms')} | "
            f"{_num(r.peak_rss and r.peak_rss / 2**20, 0, ' MiB')} |")
    return "\n".join(out)


def ratios_table(rows: list[Row]) -> str:
    by = {r.key: r for r in rows}
    floor, direct = by.get("passthrough"), by.get("direct")
    out = ["| Scenario | req/s @32 ÷ pass-through | req/s @1 ÷ pass-through "
           "| p50 @1 added over direct | p50 @32 added over direct "
           "| TTFB p50 over pass-through | CPU per call @32 ÷ pass-through |",
           "|---|" + "---:|" * 6]
    for r in rows:
        if r.reason is not None or r.key == "direct":
            continue
        out.append(
            f"| {r.title} | {_ratio(r.rps(32), floor and floor.rps(32))} | "
            f"{_ratio(r.rps(1), floor and floor.rps(1))} | "
            f"{_delta(r.p50(1), direct and direct.p50(1))} | "
            f"{_delta(r.p50(32), direct and direct.p50(32))} | "
            f"{_delta(r.stream and r.stream.ttfb_p50_ms, floor and floor.stream and floor.stream.ttfb_p50_ms)} | "  # noqa: E501
            f"{_ratio(r.cpu_us(32), floor and floor.cpu_us(32))} |")
    return "\n".join(out)


def bar(rows: list[Row]) -> list[str]:
    """The issue's bar, and growth, as PASS/FAIL lines with the measured figures."""
    by = {r.key: r for r in rows if r.reason is None}
    outlay, floor, direct = by.get("outlay"), by.get("passthrough"), by.get("direct")
    shared = by.get("outlay-redis-pg")
    lines = []

    def check(ok: bool | None, text: str) -> None:
        lines.append(f"- **{'n/a' if ok is None else 'PASS' if ok else 'FAIL'}** {text}")

    def share(row: Row | None, name: str, least: float) -> None:
        """A line: `row`'s throughput at 32 connections at least `least` of the floor's."""
        if row and floor:
            a, b = row.rps(32), floor.rps(32)
            check(None if not a or not b else a / b >= least,
                  f"{name} throughput at 32 connections ≥ {least:.0%} of the pass-through's: "
                  f"{_num(a)} vs {_num(b)} req/s = {_ratio(a, b)}")

    share(outlay, "Outlay embedded", BAR_THROUGHPUT)
    share(shared, "Outlay on Redis + PostgreSQL", BAR_THROUGHPUT_REDIS_PG)
    guards = by.get("outlay-guards")  # the guards on the request path keep the embedded bar
    share(guards, f"{guards.title}:" if guards else "", BAR_THROUGHPUT)
    if outlay and floor:
        a, b = outlay.p50(1), floor.p50(1)
        added = None if a is None or b is None else a - b
        check(None if added is None else added <= BAR_OVER_FLOOR_P50_MS,
              f"p50 latency at 1 connection ≤ {BAR_OVER_FLOOR_P50_MS} ms over the "
              f"pass-through's: {_num(a, 3)} − {_num(b, 3)} ms = {_delta(a, b)}")
    portkey = by.get("portkey")
    if outlay and portkey:
        a, b = outlay.rps(32), portkey.rps(32)
        check(None if not a or not b else a >= BAR_OVER_PORTKEY * b,
              f"Outlay embedded throughput at 32 connections ≥ {BAR_OVER_PORTKEY:.0f} × "
              f"Portkey's: {_num(a)} vs {_num(b)} req/s = "
              f"{'–' if not a or not b else f'{a / b:.2f} ×'}")
    if outlay and portkey and direct:
        d, ours, theirs = direct.p50(1), outlay.p50(1), portkey.p50(1)
        a = None if ours is None or d is None else ours - d
        b = None if theirs is None or d is None else theirs - d
        check(None if a is None or b is None else a <= BAR_PORTKEY_ADDED * b,
              f"p50 latency Outlay embedded adds over direct at 1 connection ≤ half of "
              f"Portkey's: {_num(a, 3, ' ms')} vs {_num(b, 3, ' ms')}")
    if outlay and floor and outlay.stream and floor.stream:
        a, b = outlay.stream.ttfb_p50_ms, floor.stream.ttfb_p50_ms
        check(a - b <= BAR_TTFB_MS,
              f"stream time to first chunk within {BAR_TTFB_MS} ms of the pass-through's: "
              f"{a:.2f} vs {b:.2f} ms = {a - b:+.2f} ms")
    grown = by.get("outlay-grown")
    if outlay and grown:
        a, b = grown.rps(32), outlay.rps(32)
        pa, pb = grown.p50(1), outlay.p50(1)
        ok = (a is not None and b is not None and pa is not None and pb is not None
              and a >= GROWTH_THROUGHPUT * b and pa - pb <= GROWTH_P50_MS)
        share = "–" if a is None or not b else f"{100 * a / b:.1f}%"
        check(ok, f"growth: {grown.title} keeps ≥ {GROWTH_THROUGHPUT:.0%} of the small store's "
                  f"req/s @32 ({share}) and its p50 @1 within {GROWTH_P50_MS} ms "
                  f"({_delta(pa, pb)})")
    if not lines:
        lines.append("- n/a: the bar needs the Outlay, pass-through and direct scenarios")
    return lines


def markdown(rows: list[Row], *, title: str, setup: list[str], checks: list[str],
             profile: str | None, chart: str | None, hostile: str | None = None) -> str:
    out = [f"# {title}", "", *setup, "", "## Figures", "", figures_table(rows), "",
           "## Relative to the floor and to direct", "", ratios_table(rows), "",
           "## The bar", "", *bar(rows), ""]
    missing = [r for r in rows if r.reason is not None]
    if missing:
        out += ["## Not available", ""]
        out += [f"- **{r.title}**: {r.reason}" for r in missing]
        out.append("")
    out += ["## Scenarios", ""]
    for r in rows:
        notes = f" ({'; '.join(r.notes)})" if r.notes else ""
        out.append(f"- **{r.title}**: {r.about}{notes}")
    bad = [f"{r.title}: {r.bad_answers()}" for r in rows if r.reason is None and r.bad_answers()]
    out += ["", "Errors or non-2xx answers during load: " + ("; ".join(bad) if bad else "none")]
    if hostile:
        out += ["", "## Paying calls beside hostile clients", "",
                "`wrk -c1` paying calls, alone and while clients without a valid key send "
                "4 MiB bodies of tiny messages as fast as they are refused (bench/hostile.py);"
                " medians of the rounds.", "", hostile]
    if checks:
        out += ["", "## Enforcement check", "", *checks]
    if chart:
        out += ["", f"![chart]({chart})"]
    if profile:
        out += ["", "## Profile of Outlay under load", "", profile]
    return "\n".join(out) + "\n"


def _off_scale(direct: Row | None) -> str:
    if direct is None or direct.rps(32) is None:
        return ""
    return f"\ndirect to nginx: {direct.rps(32):,.0f} req/s, not drawn to scale"


def chart(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in rows if r.reason is None]
    labels = [r.title.replace(", ", ",\n", 1) for r in ran]
    colors = ["#3b6ea5" if r.outlay else "#9aa5b1" for r in ran]
    # nginx alone answers some thirty times faster than any Python gateway: drawn to scale
    # it would flatten every other bar of the throughput panel, so it is named, not drawn
    direct = next((r for r in ran if r.key == "direct"), None)
    throughput = f"Throughput, 32 connections (req/s){_off_scale(direct)}"
    panels = [
        (throughput, [0 if r is direct else r.rps(32) or 0 for r in ran], "{:,.0f}"),
        ("Latency p50, 1 connection (ms)", [r.p50(1) or 0 for r in ran], "{:.2f}"),
        ("Stream: time to first chunk, p50 (ms)",
         [r.stream.ttfb_p50_ms if r.stream else 0 for r in ran], "{:.2f}"),
        ("Peak memory of the process tree (MiB)",
         [(r.peak_rss or 0) / 2**20 for r in ran], "{:,.0f}"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    for ax, (name, values, fmt) in zip(axes.flat, panels, strict=True):
        bars = ax.barh(range(len(ran)), values, color=colors)
        ax.set_yticks(range(len(ran)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.bar_label(bars, labels=[fmt.format(v) if v else "" for v in values], fontsize=8,
                     padding=2)
        ax.margins(x=0.18)
        ax.grid(axis="x", alpha=0.3)
    missing = [r.title for r in rows if r.reason is not None]
    suffix = f"\nnot available: {', '.join(missing)}" if missing else ""
    fig.suptitle(title + suffix, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
