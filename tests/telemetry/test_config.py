"""The `telemetry:` section: off unless it names an endpoint; bad values name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from outlay.settings import ConfigError, load_settings


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "outlay.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env or {})


def test_off_by_default(tmp_path: Path) -> None:
    assert _load(tmp_path, "listen: 127.0.0.1:0\n").telemetry is None
    # an unset env: reference turns it off too
    assert _load(tmp_path, "telemetry: {otlp_endpoint: env:NOPE}\n").telemetry is None


@pytest.mark.parametrize(("endpoint", "url"), [
    ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
    ("https://otel.example/", "https://otel.example/v1/traces"),
    ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
    ("http://collector:4318/prefix", "http://collector:4318/prefix/v1/traces"),
])
def test_the_endpoint_gets_the_traces_path(tmp_path: Path, endpoint: str, url: str) -> None:
    telemetry = _load(tmp_path, f"telemetry: {{otlp_endpoint: '{endpoint}'}}\n").telemetry
    assert telemetry is not None
    assert telemetry.traces_url == url
    assert (telemetry.service_name, telemetry.timeout_s, telemetry.max_queue) == (
        "outlay", 5.0, 2048)


def test_every_field(tmp_path: Path) -> None:
    telemetry = _load(tmp_path, (
        "telemetry: {otlp_endpoint: 'http://c:4318', service_name: billing-gw, timeout_s: 0.5,"
        " max_queue: 10, headers: {x-api-key: env:COLLECTOR_KEY}}\n"),
        {"COLLECTOR_KEY": "sekrit-collector-key"}).telemetry
    assert telemetry is not None
    assert telemetry.service_name == "billing-gw"
    assert (telemetry.timeout_s, telemetry.max_queue) == (0.5, 10)
    assert dict(telemetry.headers) == {"x-api-key": "sekrit-collector-key"}
    assert "sekrit" not in repr(telemetry)


@pytest.mark.parametrize(("text", "message"), [
    ("telemetry: http://c:4318\n", r"telemetry must be a mapping like \{otlp_endpoint"),
    ("telemetry: {endpoint: 'http://c:4318'}\n",
     r"telemetry: unknown field\(s\) endpoint; known: otlp_endpoint"),
    ("telemetry: {otlp_endpoint: 'c:4318'}\n",
     r"telemetry\.otlp_endpoint must be an http:// or https:// URL"),
    ("telemetry: {otlp_endpoint: 'grpc://c:4317'}\n", r"telemetry\.otlp_endpoint must be an"),
    ("telemetry: {otlp_endpoint: 'http://c:99999'}\n", r"telemetry\.otlp_endpoint has a bad port"),
    ("telemetry: {otlp_endpoint: 'http://c:4318/?a=1'}\n",
     r"telemetry\.otlp_endpoint must not carry a query"),
    ("telemetry: {otlp_endpoint: 5}\n", r"telemetry\.otlp_endpoint must be a non-empty string"),
    ("telemetry: {otlp_endpoint: 'http://c', timeout_s: 0}\n", r"telemetry\.timeout_s must be"),
    ("telemetry: {otlp_endpoint: 'http://c', max_queue: 0}\n", r"telemetry\.max_queue must be"),
    ("telemetry: {otlp_endpoint: 'http://c', service_name: ''}\n",
     r"telemetry\.service_name must be a non-empty string"),
    ("telemetry: {otlp_endpoint: 'http://c', headers: [a]}\n",
     r"telemetry\.headers must be a mapping"),
    ("telemetry: {otlp_endpoint: 'http://c', headers: {'a b': x}}\n",
     r"telemetry\.headers: 'a b' is not a header name"),
    ("telemetry: {otlp_endpoint: 'http://c', headers: {k: env:UNSET}}\n",
     r"telemetry\.headers\.k must be a non-empty string"),
])
def test_bad_values_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"outlay\.yaml: {message}"):
        _load(tmp_path, text)
