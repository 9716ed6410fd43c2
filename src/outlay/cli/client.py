"""A tiny admin API client for the CLI, and the options every admin command shares.

Failures become ``AdminError`` (a ``click.ClickException``): click prints the message to
stderr and exits 1. Tests swap the network by passing ``CliHooks(transport=…)`` as the
click context object: ``CliRunner().invoke(main, args, obj=CliHooks(transport))``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:8800"
ADMIN_PREFIX = "/admin/v1"

R = TypeVar("R")


class AdminError(click.ClickException):
    """The gateway refused an admin call, or could not be reached."""


@dataclass(frozen=True)
class CliHooks:
    """Seams for tests: an in-process transport instead of the network."""

    transport: httpx.BaseTransport | None = None


class AdminClient:
    """Calls ``/admin/v1/…`` on one gateway with a bearer token; answers are decoded JSON."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._transport = transport
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Send one admin call; ``path`` is below /admin/v1. None params are left out."""
        response = self._send(method, path, params, body, "application/json")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise AdminError(
                f"the gateway answered {response.status_code} with a body that is not JSON"
            ) from None

    def get_text(self, path: str, **params: Any) -> str:
        """A GET whose answer is text (a report as CSV), as the gateway wrote it."""
        return self._send("GET", path, params, None, "text/csv").text

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any,
              accept: str) -> httpx.Response:
        headers = {"Accept": accept, "User-Agent": "outlay-cli"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        query = {name: value for name, value in (params or {}).items() if value is not None}
        # A client per call: every CLI command makes one or two calls and then exits.
        with httpx.Client(
            base_url=self.url, transport=self._transport, timeout=self._timeout
        ) as http:
            try:
                response = http.request(
                    method,
                    ADMIN_PREFIX + path,
                    params=query,
                    headers=headers,
                    json=body,
                )
            except httpx.ConnectError:
                raise AdminError(
                    f"cannot reach the gateway at {self.url} "
                    "(is `outlay serve` running? set --url or OUTLAY_URL)"
                ) from None
            except httpx.TimeoutException:
                raise AdminError(
                    f"the gateway at {self.url} did not answer within {self._timeout:g} s"
                ) from None
            except httpx.TransportError as exc:
                raise AdminError(f"cannot reach the gateway at {self.url}: {exc}") from None
        if response.is_error:
            raise AdminError(error_message(response))
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body)


def error_message(response: httpx.Response) -> str:
    """The server's own words for a failed call, with its status and error code."""
    message: object = None
    code: object = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # OpenAI-shaped, as the gateway answers (SPEC §4)
            message, code = error.get("message"), error.get("code") or error.get("type")
        elif isinstance(error, str):
            message = error
        else:
            message = body.get("message") or body.get("detail")
    text = str(message or response.text.strip() or response.reason_phrase)
    status = f"HTTP {response.status_code}" + (f" {code}" if code else "")
    hint = {401: "; check --token or OUTLAY_ADMIN_TOKEN",
            403: "; this admin token may not do that (`outlay whoami` shows its role and "
                 "scopes)"}.get(response.status_code, "")
    return f"{text} ({status}){hint}"


def segment(value: str) -> str:
    """Quote one path segment (a key id, a scope); ':' stays readable in scopes."""
    return quote(value, safe=":@")


@dataclass(frozen=True)
class Admin:
    """What an admin command gets: the client, and whether to print JSON or tables."""

    client: AdminClient
    as_json: bool

    def emit(self, answer: Any, render: Callable[[Any], str]) -> None:
        """Print the answer: as indented JSON with --json, else through ``render``."""
        if self.as_json:
            if answer is not None:
                click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
            return
        text = render(answer)
        if text:
            click.echo(text)


def admin_command(command: Callable[..., R]) -> Callable[..., R]:
    """Add --url, --token and --json to a command and hand it an ``Admin`` as first argument."""

    @click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the gateway's JSON answer instead of a table.",
    )
    @click.option(
        "--token",
        envvar="OUTLAY_ADMIN_TOKEN",
        show_envvar=True,
        help="Admin token, sent as a bearer token.",
    )
    @click.option(
        "--url",
        envvar="OUTLAY_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        help="Base URL of the gateway.",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, url: str, token: str | None, as_json: bool, **kwargs: Any) -> R:
        hooks = click.get_current_context().find_object(CliHooks) or CliHooks()
        admin = Admin(AdminClient(url, token, transport=hooks.transport), as_json)
        return command(admin, *args, **kwargs)

    return wrapper
