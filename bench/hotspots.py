"""Where a profiled gateway spends its time: a summary of py-spy's collapsed stacks
(`py-spy record --format raw --idle`). Standard library only, so tests can load this file.

Each input line is ``frame;frame;…;leaf COUNT``, a frame being ``function (path:line)``.
Time in C (SQLite, orjson, the socket calls) is charged to the Python line that called it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?):(?P<line>\d+)\)$")
# a thread of the event loop waiting in epoll is idle, not working, and so is a thread
# waiting for its next turn (py-spy names a method by its class: `Condition.wait`)
_IDLE_LEAVES = {("select", "selectors.py"), ("poll", "selectors.py"),
                ("_worker", "concurrent/futures/thread.py"), ("wait", "threading.py")}


@dataclass(frozen=True)
class Frame:
    func: str
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.func} ({self.path})"

    @property
    def at(self) -> str:
        return f"{self.func} ({self.path}:{self.line})"


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "?", 0)
    return Frame(match["func"], match["path"], int(match["line"]))


@dataclass
class Profile:
    total: int = 0
    idle: int = 0
    self_by_function: Counter[str] = field(default_factory=Counter)
    self_by_line: Counter[str] = field(default_factory=Counter)
    self_by_file: Counter[str] = field(default_factory=Counter)
    self_by_package: Counter[str] = field(default_factory=Counter)
    inclusive_by_function: Counter[str] = field(default_factory=Counter)

    @property
    def active(self) -> int:
        return self.total - self.idle

    def share(self, count: int) -> float:
        """Percent of the active (non-idle) samples."""
        return 100.0 * count / self.active if self.active else 0.0


def package_of(path: str) -> str:
    """A coarse owner of a file: outlay's subpackage, else the top-level package."""
    parts = path.replace("\\", "/").split("/")
    if "outlay" in parts:
        rest = parts[parts.index("outlay") + 1:]
        return "outlay/" + rest[0] if len(rest) > 1 else "outlay"
    for i, part in enumerate(parts):
        if part in ("site-packages", "dist-packages") and i + 1 < len(parts):
            return parts[i + 1].removesuffix(".py")
    return parts[0].removesuffix(".py") if len(parts) > 1 else "(stdlib) " + parts[0]


def summarize(lines: Iterable[str]) -> Profile:
    profile = Profile()
    for raw in lines:
        raw = raw.rstrip("\n")
        stack_text, _, count_text = raw.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack_text.split(";") if f]
        if not frames:
            continue
        profile.total += count
        leaf = frames[-1]
        if any(leaf.func.rpartition(".")[2] == f and leaf.path.endswith(p)
               for f, p in _IDLE_LEAVES):
            profile.idle += count
            continue
        profile.self_by_function[leaf.where] += count
        profile.self_by_line[leaf.at] += count
        profile.self_by_file[leaf.path] += count
        profile.self_by_package[package_of(leaf.path)] += count
        for where in {frame.where for frame in frames}:  # once per sample, recursion or not
            profile.inclusive_by_function[where] += count
    return profile


TRUNK = 0.98


def report(profile: Profile, top: int = 15) -> str:
    """The summary as markdown: shares of the active samples."""
    out = [f"{profile.total} samples, {profile.idle} idle (waiting in epoll), "
           f"{profile.active} active; shares below are of the active samples.", ""]

    def table(title: str, counts: Counter[str], n: int) -> None:
        out.extend([f"**{title}**", "", "| % | where |", "|---:|---|"])
        out.extend(f"| {profile.share(c):.1f} | `{name}` |" for name, c in counts.most_common(n))
        out.append("")

    table("Self time by package", profile.self_by_package, top)
    # the trunk every sample shares (the CLI, run_app, the event loop) says nothing
    trunk = {name for name, c in profile.inclusive_by_function.items()
             if c >= TRUNK * profile.active}
    branches: Counter[str] = Counter({name: c for name, c in
                                      profile.inclusive_by_function.items() if name not in trunk})
    table(f"Inclusive time by function (the function or anything it called; the "
          f"{len(trunk)} frames under every sample left out)", branches, top + 10)
    table("Self time by function", profile.self_by_function, top)
    table("Self time by line (C calls charged to the calling line)", profile.self_by_line, top)
    return "\n".join(out)
