"""The dashboard's files as the gateway serves them: from the installed package, with a strict
Content-Security-Policy on every /ui answer, only from a fixed list of names, and markup that
needs nothing beyond those files."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from importlib import resources
from typing import Any
from urllib.parse import urljoin

import pytest
from aiohttp.test_utils import TestClient

from outlay.ui import FILES

TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "overview.js": "text/javascript; charset=utf-8",
    "writes.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SCRIPTS = [name for name in TYPES if name.endswith(".js")]
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def packaged(name: str) -> bytes:
    return resources.files("outlay.ui").joinpath("static", name).read_bytes()


def csp_directives(value: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in value.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_secured(headers: Any) -> None:
    for name, value in SECURITY.items():
        assert headers.get(name) == value, (name, headers.get(name))
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    for sources in csp.values():
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(
            sources)


def test_every_served_name_is_in_the_package() -> None:
    static = resources.files("outlay.ui").joinpath("static")
    assert sorted(entry.name for entry in static.iterdir()) == sorted(TYPES)
    assert set(FILES) == set(TYPES)
    for name in TYPES:
        assert packaged(name).strip()


async def test_the_page_is_served_with_its_security_headers(ui: TestClient[Any, Any]) -> None:
    resp = await ui.get("/ui/")  # no token: the files hold no data
    assert resp.status == 200
    assert resp.headers["Content-Type"] == TYPES["index.html"]
    assert_secured(resp.headers)
    assert await resp.read() == packaged("index.html")


@pytest.mark.parametrize("name", sorted(TYPES))
async def test_each_file_has_its_content_type(ui: TestClient[Any, Any], name: str) -> None:
    resp = await ui.get(f"/ui/{name}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == TYPES[name]
    assert_secured(resp.headers)
    assert await resp.read() == packaged(name)
    head = await ui.head(f"/ui/{name}")
    assert head.status == 200
    assert head.headers["Content-Type"] == TYPES[name]


async def test_ui_without_slash_redirects(ui: TestClient[Any, Any]) -> None:
    resp = await ui.get("/ui", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/ui/"
    assert_secured(resp.headers)
    followed = await ui.get("/ui")
    assert followed.status == 200
    assert str(followed.url).endswith("/ui/")


@pytest.mark.parametrize("path", [
    "/ui/nope.js", "/ui/APP.JS", "/ui/app.js/", "/ui/static/app.js", "/ui/__init__.py",
    "/ui/index.htm", "/ui/.app.js", "/ui/app.js%00.html",
])
async def test_unknown_files_are_not_found(ui: TestClient[Any, Any], path: str) -> None:
    resp = await ui.get(path)
    assert resp.status == 404
    assert_secured(resp.headers)
    assert b"add_ui_routes" not in await resp.read()


async def test_other_methods_are_refused(ui: TestClient[Any, Any]) -> None:
    resp = await ui.post("/ui/app.js", data=b"x")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"
    assert_secured(resp.headers)


async def raw_get(client: TestClient[Any, Any], target: str) -> tuple[int, bytes]:
    """GET the request target byte for byte, as no HTTP client library would send it."""
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, _ = answer.partition(b"\r\n")
    return int(status_line.split()[1]), answer


@pytest.mark.parametrize("target", [
    "/ui/../pyproject.toml",
    "/ui/%2e%2e/pyproject.toml",
    "/ui/%2E%2E/%2E%2E/pyproject.toml",
    "/ui/..%2fpyproject.toml",
    "/ui/..%2f..%2f..%2fpyproject.toml",
    "/ui/%2e%2e%2f__init__.py",
    "/ui/..%5c__init__.py",
    "/ui/static/../__init__.py",
    "/ui/../../../../etc/passwd",
    "/ui/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/ui//etc/passwd",
])
async def test_no_path_leaves_the_whitelist(ui: TestClient[Any, Any], target: str) -> None:
    status, answer = await raw_get(ui, target)
    assert status == 404, answer[:300]
    for secret in (b"[build-system]", b"add_ui_routes", b"root:"):
        assert secret not in answer


class Refs(HTMLParser):
    """What a page asks the browser to fetch or run."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.refs.append(value)
            if name == "style" or name.startswith("on"):
                self.inline.append(f"<{tag} {name}=…>")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self.scripts.append(named)
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("<script> with a body")


async def test_the_page_needs_only_the_served_files(ui: TestClient[Any, Any]) -> None:
    parser = Refs()
    parser.feed(packaged("index.html").decode())
    assert parser.inline == []  # the CSP would block them
    assert [s.get("type") for s in parser.scripts] == ["module"]
    assert sorted(parser.refs) == ["app.js", "style.css"]
    for ref in parser.refs:
        url = urljoin("/ui/", ref)
        assert url.startswith("/ui/")
        resp = await ui.get(url)
        assert resp.status == 200, url
    # the scripts fetch nothing but the admin API, and import only one another
    fetched = []
    for name in SCRIPTS:
        script = packaged(name).decode()
        for imported in re.findall(r"^import\s[^;]*?from\s+\"([^\"]+)\"", script,
                                   re.MULTILINE | re.DOTALL):
            assert imported.startswith("./")
            assert imported[2:] in SCRIPTS, (name, imported)
        assert not re.search(r"import\(", script)
        # the one URL: SVG's namespace, a name that is never fetched
        assert re.findall(r"https?://[^\"]*", script) in ([], ["http://www.w3.org/2000/svg"])
        fetched += re.findall(r"fetch\(([^,)]+)", script)
    assert fetched == ["API + path"]


def test_api_data_is_never_parsed_as_markup() -> None:
    """Names, labels and agents come from whoever mints keys: the page must only ever make
    text nodes of them."""
    script = "\n".join(packaged(name).decode() for name in SCRIPTS)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"on", "srcdoc", "DOMParser",
                 "createContextualFragment"):
        assert sink not in script, sink
