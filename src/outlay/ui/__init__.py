"""The dashboard at /ui/: the static files, read from the package once when the app is built
and served from memory. They hold no data; the page calls the admin API with the operator's
token, so these routes need none."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

# The only names served: a request path is looked up here, never joined to a file path.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "overview.js": "text/javascript; charset=utf-8",
    "writes.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def load_files() -> dict[str, bytes]:
    """The static files as the installed package holds them."""
    static = resources.files(__name__).joinpath("static")
    return {name: static.joinpath(name).read_bytes() for name in FILES}


def add_ui_routes(app: web.Application) -> None:
    files = load_files()

    async def serve(request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="Method Not Allowed",
                                headers={**HEADERS, "Allow": "GET, HEAD"})
        name = request.match_info["name"] or "index.html"
        body = files.get(name)
        if body is None:
            return web.Response(status=404, text="Not Found", headers=HEADERS)
        return web.Response(body=body, headers={**HEADERS, "Content-Type": FILES[name]})

    async def to_index(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={**HEADERS, "Location": "/ui/"})

    app.router.add_route("*", "/ui", to_index)
    app.router.add_route("*", "/ui/{name:.*}", serve)
