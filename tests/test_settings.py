"""Settings: file, then OUTLAY_* environment, then command-line overrides."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from outlay.gateway.wiring import vendors_from_settings
from outlay.settings import ConfigError, EndpointSettings, Settings, load_settings
from outlay.webhooks.delivery import delivery_settings


@pytest.fixture(autouse=True)
def _no_local_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings reads ./outlay.yaml when no path is given; never let the repo's leak in.
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "outlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_defaults_without_any_file_are_simulated() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.state) == (
        "127.0.0.1",
        8800,
        "sqlite:///outlay.db",
    )
    assert settings.workers == 1
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert settings.simulated


def test_spec_example_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        listen: 0.0.0.0:9000
        state: redis://127.0.0.1:6379/0
        database: postgresql://outlay@db/outlay
        admin_token: env:OUTLAY_ADMIN_TOKEN
        workers: 4
        max_body_bytes: 1024
        reservation_lease_s: 60
        simulated: {latency_ms: 50}
        providers:
          openai:
            endpoints:
              - {base_url: https://api.openai.com/v1, api_key: env:OPENAI_API_KEY, weight: 3}
              - {base_url: https://eu.example-proxy/v1, api_key: env:OPENAI_API_KEY_2, weight: 1}
          anthropic:
            endpoints: [{base_url: https://api.anthropic.com, api_key: env:ANTHROPIC_API_KEY}]
        vendors:
          stripe: {base_url: https://api.stripe.com, secret: env:STRIPE_SECRET_KEY}
          resend: {base_url: https://api.resend.com, api_key: env:RESEND_API_KEY}
        prices: {my-model: {input: 1, output: 2}}
        policies:
          global: {budgets: [{usd: 1000, period: month, mode: hard}]}
          agent:bot: {rpm: 60}
        """,
    )
    env = {
        "OUTLAY_ADMIN_TOKEN": "adm",
        "OPENAI_API_KEY": "sk-1",
        "OPENAI_API_KEY_2": "sk-2",
        "STRIPE_SECRET_KEY": "sk_test",
        "ANTHROPIC_API_KEY": "sk-a",
        "RESEND_API_KEY": "re_1",
    }
    settings = load_settings(path, env)
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.state == "redis://127.0.0.1:6379/0"
    assert settings.database == "postgresql://outlay@db/outlay"
    assert settings.admin_token == "adm"
    assert settings.workers == 4
    assert settings.max_body_bytes == 1024
    assert settings.reservation_lease_s == 60.0
    assert settings.simulated_latency_ms == 50.0
    assert settings.providers["openai"] == (
        EndpointSettings("https://api.openai.com/v1", "sk-1", 3),
        EndpointSettings("https://eu.example-proxy/v1", "sk-2", 1),
    )
    assert settings.providers["anthropic"] == (
        EndpointSettings("https://api.anthropic.com", "sk-a"),)
    assert settings.vendors["stripe"] == {"base_url": "https://api.stripe.com", "secret": "sk_test"}
    assert settings.vendors["resend"]["api_key"] == "re_1"
    assert settings.simulated_upstreams() == ["twilio"]  # the one vendor no section configures
    assert settings.prices == {"my-model": {"input": 1, "output": 2}}
    assert settings.policies["agent:bot"] == {"rpm": 60}
    assert not settings.simulated


def test_environment_overrides_file_and_cli_overrides_both(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: 10.0.0.1:7000\nstate: sqlite:///file.db\nworkers: 2\n")
    env = {"OUTLAY_STATE": "sqlite:///env.db", "OUTLAY_WORKERS": "3", "OUTLAY_LISTEN": "[::1]:7100"}
    settings = load_settings(path, env)
    assert (settings.state, settings.workers) == ("sqlite:///env.db", 3)
    assert (settings.host, settings.port) == ("::1", 7100)

    settings = load_settings(path, env, state="redis://r:6379/0", port=7200, workers=None)
    assert settings.state == "redis://r:6379/0"
    assert (settings.host, settings.port) == ("::1", 7200)  # only the flag given wins
    assert settings.workers == 3


def test_every_documented_variable_is_read() -> None:
    env = {
        "OUTLAY_LISTEN": "example.org:81",
        "OUTLAY_STATE": "redis://r/0",
        "OUTLAY_DATABASE": "postgresql://db/outlay",
        "OUTLAY_ADMIN_TOKEN": "tok",
        "OUTLAY_WORKERS": "8",
        "OUTLAY_MAX_BODY_BYTES": "100",
        "OUTLAY_SIMULATED_LATENCY_MS": "2.5",
        "OUTLAY_RESERVATION_LEASE_S": "30",
        "OUTLAY_HEADER_TIMEOUT_S": "5",
        "OUTLAY_IDLE_TIMEOUT_S": "6",
        "OUTLAY_BODY_TIMEOUT_S": "7",
        "OUTLAY_MAX_CONNECTIONS": "8",
        "OUTLAY_METRICS_TOKEN": "t" * 16,
        "OUTLAY_APPROVAL_TTL": "15m",
        "OUTLAY_ABANDONED_STREAM_S": "12.5",
        "OUTLAY_ABANDONED_STREAM_BYTES": "4096",
    }
    settings = load_settings(None, env)
    assert settings == Settings(
        host="example.org",
        port=81,
        state="redis://r/0",
        database="postgresql://db/outlay",
        admin_token="tok",
        workers=8,
        max_body_bytes=100,
        simulated_latency_ms=2.5,
        reservation_lease_s=30.0,
        header_timeout_s=5.0,
        idle_timeout_s=6.0,
        body_timeout_s=7.0,
        max_connections=8,
        metrics_token="t" * 16,
        approval_ttl=900.0,
        abandoned_stream_s=12.5,
        abandoned_stream_bytes=4096,
    )


@pytest.mark.parametrize(("text", "seconds"), [
    ("approval_ttl: 90\n", 90.0), ("approval_ttl: 2.5\n", 2.5), ("approval_ttl: 90s\n", 90.0),
    ("approval_ttl: 30m\n", 1800.0), ("approval_ttl: 1h\n", 3600.0),
    ("approval_ttl: 7d\n", 604800.0), ("approval_ttl: '45'\n", 45.0), ("", 3600.0),
])
def test_approval_ttl_takes_seconds_or_a_duration(
        tmp_path: Path, text: str, seconds: float) -> None:
    assert load_settings(write(tmp_path, text), {}).approval_ttl == seconds


def test_price_snapshot_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "price_snapshot: prices.snapshot.yaml\n")
    assert load_settings(path, {}).price_snapshot == "prices.snapshot.yaml"
    assert load_settings(path, {"OUTLAY_PRICE_SNAPSHOT": "/x.yaml"}).price_snapshot == "/x.yaml"
    assert load_settings(write(tmp_path, ""), {}).price_snapshot is None
    with pytest.raises(ConfigError, match="price_snapshot"):
        load_settings(write(tmp_path, "price_snapshot: 3\n"), {})


def test_the_file_read_is_known_by_its_absolute_path(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "workers: 2\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings("outlay.yaml", {}).config_file == str(tmp_path / "outlay.yaml")
    assert load_settings(None, {}).config_file == str(tmp_path / "outlay.yaml")
    monkeypatch.chdir(tmp_path.parent)
    assert load_settings(None, {}).config_file is None


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 2\n")
    assert load_settings(path, {"OUTLAY_WORKERS": ""}).workers == 2


def test_outlay_yaml_in_working_directory_and_outlay_config(tmp_path: Path) -> None:
    write(tmp_path, "workers: 5\n")
    assert load_settings(None, {}).workers == 5
    other = write(tmp_path, "workers: 6\n", name="other.yaml")
    assert load_settings(None, {"OUTLAY_CONFIG": str(other)}).workers == 6
    assert load_settings(other, {"OUTLAY_CONFIG": "missing.yaml"}).workers == 6


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8800", "127.0.0.1", 8800),
        ("localhost:1", "localhost", 1),
        ("[::1]:8800", "::1", 8800),
        ("[2001:db8::7]:443", "2001:db8::7", 443),
        ("0.0.0.0:0", "0.0.0.0", 0),
    ],
)
def test_listen_parsing(listen: str, host: str, port: int) -> None:
    settings = load_settings(None, {"OUTLAY_LISTEN": listen})
    assert (settings.host, settings.port) == (host, port)
    assert load_settings(None, {"OUTLAY_LISTEN": settings.listen}) == settings


@pytest.mark.parametrize("listen", ["8800", "::1", "::1:8800", "[::1]", "host:", ":80", "h:99999"])
def test_bad_listen_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError, match="OUTLAY_LISTEN"):
        load_settings(None, {"OUTLAY_LISTEN": listen})


def test_listen_must_be_text_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: 8800\n")
    with pytest.raises(ConfigError, match=r"outlay\.yaml: listen must be a non-empty string"):
        load_settings(path, {})


def test_unknown_top_level_key_names_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: 127.0.0.1:1\nprovider: {}\n")
    with pytest.raises(ConfigError, match=r"outlay\.yaml: unknown setting\(s\) provider"):
        load_settings(path, {})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("workers: many\n", "workers"),
        ("workers: 0\n", "workers"),
        ("workers: true\n", "workers"),
        ("max_body_bytes: 1.5\n", "max_body_bytes"),
        ("state: 5\n", "state"),
        ("state: outlay.db\n", "state"),
        ("reservation_lease_s: .nan\n", "reservation_lease_s"),
        ("approval_ttl: 0\n", "approval_ttl must be at least 1 second"),
        ("approval_ttl: -5\n", "approval_ttl"),
        ("approval_ttl: 1w\n", "approval_ttl must be seconds or a duration"),
        ("approval_ttl: soon\n", "approval_ttl must be seconds or a duration"),
        ("approval_ttl: true\n", "approval_ttl"),
        ("simulated: {latency_ms: -1}\n", r"simulated\.latency_ms"),
        ("simulated: {latency: 1}\n", "simulated"),
        ("providers: [openai]\n", "providers"),
        ("providers: {openai: {endpoints: {}}}\n", r"providers\.openai\.endpoints"),
        ("providers: {openai: {keys: []}}\n", r"providers\.openai"),
        (
            "providers: {openai: {endpoints: [{api_key: k, weight: 0}]}}\n",
            r"providers\.openai\.endpoints\[0\]\.weight",
        ),
        (
            "providers: {openai: {endpoints: [{api-key: k}]}}\n",
            r"providers\.openai\.endpoints\[0\]: unknown",
        ),
        (
            "providers: {acme: {endpoints: [{api_key: k}]}}\n",
            r"providers\.acme\.endpoints\[0\]\.base_url",
        ),
        ("vendors: {stripe: sk_123}\n", r"vendors\.stripe"),
        ("vendors: {Bad Name: {}}\n", "vendors"),
        ("prices: []\n", "prices"),
        ("webhooks: 5\n", "webhooks"),
        ("webhooks: {timeout_s: 0}\n", r"webhooks\.timeout_s must be a number >= 0\.001"),
        ("webhooks: {concurrency: 1.5}\n", r"webhooks\.concurrency must be an integer >= 1"),
        ("webhooks: {retry_hours: 12}\n", r"webhooks\.retry_hours must be a number >= 24"),
        ("webhooks: {retention_days: -1}\n", r"webhooks\.retention_days"),
        ("webhooks: {retries: 3}\n", r"webhooks: unknown field\(s\) retries"),
        ("server: 5\n", "server must be a mapping"),
        ("server: {header_timeout_s: 0}\n",
         r"server\.header_timeout_s must be a number >= 0\.001, got 0"),
        ("server: {idle_timeout_s: -1}\n", r"server\.idle_timeout_s must be a number"),
        ("server: {body_timeout_s: .inf}\n", r"server\.body_timeout_s must be a number"),
        ("server: {body_timeout_s: soon}\n", r"server\.body_timeout_s must be a number"),
        ("server: {max_connections: 0}\n", r"server\.max_connections must be an integer >= 1"),
        ("server: {max_connections: 1.5}\n", r"server\.max_connections must be an integer"),
        ("server: {metrics_token: short}\n",
         r"server\.metrics_token must be at least 16 printable ASCII characters without spaces "
         r"\(got 5 characters\)"),
        ("server: {metrics_token: 'a token with spaces in it'}\n", r"server\.metrics_token"),
        ("server: {metrics_token: 12345678901234567890}\n",
         r"server\.metrics_token must be a non-empty string"),
        ("server: {abandoned_stream_s: -1}\n",
         r"server\.abandoned_stream_s must be a number >= 0"),
        ("server: {abandoned_stream_bytes: 1.5}\n",
         r"server\.abandoned_stream_bytes must be an integer >= 0"),
        ("server: {keepalive: 5}\n", r"server: unknown field\(s\) keepalive; known: "
         r"header_timeout_s, idle_timeout_s, body_timeout_s, max_connections, metrics_token"),
    ],
)
def test_bad_types_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"outlay\.yaml: {key}"):
        load_settings(path, {})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="OUTLAY_WORKERS must be an integer >= 1, got 'x'"):
        load_settings(None, {"OUTLAY_WORKERS": "x"})


def test_host_override_may_carry_ipv6_brackets() -> None:
    assert load_settings(None, {}, host="[::1]").host == "::1"


def test_bad_override_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--port"):
        load_settings(None, {}, port=70000)
    with pytest.raises(TypeError, match="colour"):
        load_settings(None, {}, colour="blue")


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", {})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "listen: [\n"), {})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(write(tmp_path, "- a\n"), {})
    empty = write(tmp_path, "# nothing yet\n")
    assert load_settings(empty, {}) == Settings(config_file=str(empty))


def test_invalid_policy_names_the_scope(tmp_path: Path) -> None:
    path = write(tmp_path, "policies:\n  agent:bot: {budgets: [{usd: 5, period: fortnight}]}\n")
    with pytest.raises(ConfigError, match=r"policies\.agent:bot: budgets\[0\]\.period"):
        load_settings(path, {})


@pytest.mark.parametrize(("guard", "field"), [
    ("{max_repeats: 0, window_s: 60}", "loop_guard.max_repeats"),
    ("{max_repeats: 20, window_s: -5}", "loop_guard.window_s"),
    ("{max_repeats: 20, window_s: 60, burst: 2}", "loop_guard.burst"),
])
def test_a_bad_loop_guard_in_the_file_names_it(tmp_path: Path, guard: str, field: str) -> None:
    path = write(tmp_path, f"policies:\n  group:g: {{loop_guard: {guard}}}\n")
    with pytest.raises(ConfigError, match=rf"policies\.group:g: {re.escape(field)}"):
        load_settings(path, {})


def test_a_loop_guard_in_the_file_is_the_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "policies:\n  global: {loop_guard: {max_repeats: 20, window_s: 60}, "
                           "on_loop: revoke}\n")
    policy = load_settings(path, {}).policies["global"]
    assert dict(policy) == {"loop_guard": {"max_repeats": 20, "window_s": 60},
                            "on_loop": "revoke"}


@pytest.mark.parametrize(("policy", "field"), [
    ("{operations: {stripe: ['/v1/refunds']}}", "operations.stripe[0]"),
    ("{operations: {stripe: ['POST /v1/***']}}", "operations.stripe[0]"),
    ("{operations: {strype: ['POST /v1/refunds']}}", "operations.strype"),
    ("{budgets: [{usd: 5, flow: in}]}", "budgets[0].flow"),
])
def test_a_bad_least_privilege_policy_in_the_file_names_its_field(
        tmp_path: Path, policy: str, field: str) -> None:
    path = write(tmp_path, f"policies:\n  agent:bot: {policy}\n")
    with pytest.raises(ConfigError, match=re.escape(f"policies.agent:bot: {field}")):
        load_settings(path, {})


@pytest.mark.parametrize("value", ["-1", "2.5", "soon", "true"])
def test_a_bad_hold_wait_ms_in_the_file_names_it(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"policies:\n  group:g: {{hold_wait_ms: {value}}}\n")
    with pytest.raises(ConfigError, match=r"policies\.group:g: hold_wait_ms must be a whole"):
        load_settings(path, {})


def test_invalid_scope_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "policies:\n  robot: {rpm: 1}\n")
    with pytest.raises(ConfigError, match=r"policies\.robot: invalid scope"):
        load_settings(path, {})


def test_env_references_resolve_anywhere(tmp_path: Path) -> None:
    path = write(tmp_path, "state: env:STATE_URL\nadmin_token: env:MISSING\n")
    settings = load_settings(path, {"STATE_URL": "redis://secret@r/0"})
    assert settings.state == "redis://secret@r/0"
    assert settings.admin_token is None  # an unset reference reads as null, not an error
    with pytest.raises(ConfigError, match="'env:' must be followed"):
        load_settings(write(tmp_path, "admin_token: 'env:'\n"), {})


def test_endpoint_default_url_and_keyless_base_url(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          openai:
            endpoints:
              - {api_key: env:OPENAI_KEY}
          local:
            endpoints: [{base_url: http://127.0.0.1:11434/v1}]
        """,
    )
    settings = load_settings(path, {"OPENAI_KEY": "sk-x"})
    # A missing base_url takes the provider's default.
    assert settings.providers["openai"] == (EndpointSettings("https://api.openai.com/v1", "sk-x"),)
    assert settings.providers["local"] == (EndpointSettings("http://127.0.0.1:11434/v1", None),)
    assert not settings.simulated


def test_plain_provider_keys_from_environment(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"}
    settings = load_settings(None, env)
    assert settings.providers == {
        "openai": (EndpointSettings("https://api.openai.com/v1", "sk-o"),),
        "anthropic": (EndpointSettings("https://api.anthropic.com", "sk-a"),),
    }
    assert not settings.simulated
    # A configured provider is taken as written: simulated, never the environment's key.
    path = write(tmp_path, "providers: {openai: {simulate: true}}\n")
    settings = load_settings(path, env)
    assert set(settings.providers) == {"anthropic"}
    assert settings.simulated_upstreams() == ["openai", "stripe", "twilio", "resend"]


@pytest.mark.parametrize(("text", "where", "variable"), [
    ("providers: {openai: {endpoints: [{api_key: env:OPENAI_KEY_TYPO}]}}",
     "providers.openai.endpoints[0].api_key", "OPENAI_KEY_TYPO"),
    ("providers: {openai: {endpoints: [{api_key: env:OPENAI_API_KEY}, {api_key: env:K2}]}}",
     "providers.openai.endpoints[1].api_key", "K2"),
    ("vendors: {stripe: {secret: env:STRIPE_SECRET_KEY}}", "vendors.stripe.secret",
     "STRIPE_SECRET_KEY"),
    ("vendors: {twilio: {account_sid: AC1, auth_token: env:TWILIO_AUTH_TOKEN}}",
     "vendors.twilio.auth_token", "TWILIO_AUTH_TOKEN"),
    ("vendors: {acme: {base_url: 'https://a.example', secret: env:ACME}}",
     "vendors.acme.secret", "ACME"),
])
def test_an_unset_credential_stops_the_start(tmp_path: Path, text: str, where: str,
                                              variable: str) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"OPENAI_API_KEY": "sk", "STRIPE_SECRET_KEY": ""})
    assert f"{where} is env:{variable}, and {variable} is not set" in str(caught.value)
    assert "simulate: true" in str(caught.value)


def test_simulate_true_opts_a_section_in(tmp_path: Path) -> None:
    path = write(tmp_path, """
        providers:
          openai: {endpoints: [{api_key: env:OPENAI_API_KEY}]}
          anthropic: {simulate: true, endpoints: [{api_key: env:UNSET}]}
        vendors:
          stripe: {simulate: true, secret: env:UNSET}
          resend: {api_key: env:RESEND_API_KEY}
        """)
    settings = load_settings(path, {"OPENAI_API_KEY": "sk", "RESEND_API_KEY": "re"})
    assert set(settings.providers) == {"openai"}
    assert settings.simulate == {"anthropic", "stripe"}
    assert "stripe" not in settings.real_vendors
    assert settings.simulated_upstreams() == ["anthropic", "stripe", "twilio"]
    only_simulated = write(tmp_path, "providers: {openai: {simulate: true}}\n")
    assert load_settings(only_simulated, {}).simulated


@pytest.mark.parametrize(("text", "message"), [
    ("vendors: {acme: {simulate: true, base_url: 'https://a.example'}}",
     "vendors.acme.simulate: only stripe, twilio, resend can be simulated"),
    ("vendors: {stripe: {simulate: 'yes'}}", "vendors.stripe.simulate must be true or false"),
])
def test_bad_simulate(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(write(tmp_path, text + "\n"), {})


@pytest.mark.parametrize(("text", "hint"), [
    ("polices: {}", "unknown setting(s) polices (did you mean policies?)"),
    ("vendors: {strpe: {secret: sk}}", "vendors.strpe.base_url is required: the vendor has no "
     "default (did you mean stripe?)"),
    ("providers: {opneai: {endpoints: [{api_key: sk}]}}", "(did you mean openai?)"),
    ("default_policy: {rmp: 5}", "(did you mean rpm?)"),
])
def test_typos_in_section_names_get_did_you_mean(tmp_path: Path, text: str, hint: str) -> None:
    path = write(tmp_path, text + "\n")
    def start() -> None:
        vendors_from_settings(load_settings(path, {}))  # as `outlay serve` checks a config

    with pytest.raises((ConfigError, ValueError), match=re.escape(hint)):
        start()


def test_default_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "default_policy: {rpm: 10, budgets: [{usd: 1, period: day}]}\n")
    assert dict(load_settings(path, {}).default_policy or {}) == {
        "rpm": 10, "budgets": [{"usd": 1, "period": "day"}]}
    assert load_settings(write(tmp_path, "{}\n"), {}).default_policy is None


def test_settings_are_immutable(tmp_path: Path) -> None:
    path = write(tmp_path, "vendors: {stripe: {secret: s}}\npolicies: {global: {rpm: 1}}\n")
    settings = load_settings(path, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.vendors["twilio"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.policies["global"] = {}  # type: ignore[index]


def test_webhook_delivery_from_the_file(tmp_path: Path) -> None:
    defaults = delivery_settings(load_settings(None, {}))
    assert (defaults.timeout_s, defaults.concurrency, defaults.lease_s) == (10.0, 8, 30.0)
    assert defaults.backoff.horizon_s == 26 * 3600
    assert defaults.retention_s == 30 * 86_400
    path = write(tmp_path, """\
        webhooks: {timeout_s: 20, concurrency: 2, retry_hours: 48, retention_days: 7}
    """)
    settings = load_settings(path, {})
    assert (settings.webhook_timeout_s, settings.webhook_concurrency,
            settings.webhook_retry_hours, settings.webhook_retention_days) == (20, 2, 48, 7)
    delivery = delivery_settings(settings)
    assert (delivery.timeout_s, delivery.concurrency) == (20, 2)
    assert delivery.lease_s == 60  # a claim outlives its attempt
    assert delivery.backoff.horizon_s == 48 * 3600
    assert delivery.retention_s == 7 * 86_400
    partial = load_settings(write(tmp_path, "webhooks: {timeout_s: 3}\n", "p.yaml"), {})
    assert (partial.webhook_timeout_s, partial.webhook_concurrency) == (3, 8)


@pytest.mark.parametrize("token", ["pässwörd", "tab\there", "x" * 1025])
def test_an_admin_token_no_client_could_send_is_refused(tmp_path: Path, token: str) -> None:
    with pytest.raises(ConfigError, match="OUTLAY_ADMIN_TOKEN must be at most 1024 printable"):
        load_settings(None, {"OUTLAY_ADMIN_TOKEN": token})
    with pytest.raises(ConfigError, match=r"outlay\.yaml: admin_token must be at most"):
        load_settings(write(tmp_path, yaml.safe_dump({"admin_token": token})), {})


def test_an_admin_token_of_printable_ascii_is_kept() -> None:
    token = "oladm_ ~!x" + "y" * 1014
    assert load_settings(None, {"OUTLAY_ADMIN_TOKEN": token}).admin_token == token
def test_server_section_defaults_file_and_environment(tmp_path: Path) -> None:
    defaults = load_settings(None, {})
    assert (defaults.header_timeout_s, defaults.idle_timeout_s, defaults.body_timeout_s,
            defaults.max_connections, defaults.metrics_token) == (15, 75, 60, 10_000, None)
    path = write(tmp_path, """\
        server:
          header_timeout_s: 2.5
          idle_timeout_s: 30
          body_timeout_s: 10
          max_connections: 500
          metrics_token: env:SCRAPE_TOKEN
    """)
    token = "s3cret-scrape-token-0123"
    settings = load_settings(path, {"SCRAPE_TOKEN": token})
    assert (settings.header_timeout_s, settings.idle_timeout_s, settings.body_timeout_s,
            settings.max_connections, settings.metrics_token) == (2.5, 30, 10, 500, token)
    assert token not in repr(settings)  # a secret stays out of logs and tracebacks
    # an unset reference leaves /metrics open, as with no token at all
    assert load_settings(path, {}).metrics_token is None
    partial = load_settings(write(tmp_path, "server: {idle_timeout_s: 5}\n", "p.yaml"), {})
    assert (partial.idle_timeout_s, partial.header_timeout_s) == (5, 15)

    env = {"OUTLAY_HEADER_TIMEOUT_S": "0.5", "OUTLAY_IDLE_TIMEOUT_S": "0.75",
           "OUTLAY_BODY_TIMEOUT_S": "1", "OUTLAY_MAX_CONNECTIONS": "3",
           "OUTLAY_METRICS_TOKEN": "from-the-environment-1"}
    overridden = load_settings(path, env)
    assert (overridden.header_timeout_s, overridden.idle_timeout_s, overridden.body_timeout_s,
            overridden.max_connections, overridden.metrics_token) == (
        0.5, 0.75, 1, 3, "from-the-environment-1")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("OUTLAY_HEADER_TIMEOUT_S", "0", "OUTLAY_HEADER_TIMEOUT_S must be a number >= 0.001"),
    ("OUTLAY_IDLE_TIMEOUT_S", "never", "OUTLAY_IDLE_TIMEOUT_S must be a number"),
    ("OUTLAY_BODY_TIMEOUT_S", "nan", "OUTLAY_BODY_TIMEOUT_S must be a number"),
    ("OUTLAY_MAX_CONNECTIONS", "10k", "OUTLAY_MAX_CONNECTIONS must be an integer >= 1"),
    ("OUTLAY_METRICS_TOKEN", "tiny", "OUTLAY_METRICS_TOKEN must be at least 16"),
])
def test_bad_server_variables_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(None, {variable: value})
    if variable == "OUTLAY_METRICS_TOKEN":
        assert value not in str(caught.value)
def test_a_providers_default_service_tier(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: {openai: {service_tier_default: priority},\n"
                           "            anthropic: {service_tier_default: priority}}\n")
    settings = load_settings(path, {})
    assert settings.service_tier_defaults == {"openai": "priority", "anthropic": "priority"}
    assert settings.simulated  # a tier alone configures no endpoint
    assert load_settings(write(tmp_path, "{}\n", "empty.yaml"), {}).service_tier_defaults == {}


@pytest.mark.parametrize(("provider", "tier", "message"), [
    ("openai", "fast", r"providers\.openai\.service_tier_default: expected one of default, "
                       "flex, priority, scale, got 'fast'"),
    ("anthropic", "flex", r"providers\.anthropic\.service_tier_default: expected one of "
                          "standard, priority"),
    ("openai", 3, r"providers\.openai\.service_tier_default: expected one of"),
])
def test_a_bad_service_tier_default_is_refused_naming_it(
        tmp_path: Path, provider: str, tier: object, message: str) -> None:
    path = write(tmp_path, f"providers: {{{provider}: {{service_tier_default: {tier}}}}}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(path, {})


def test_the_abandoned_stream_bounds_come_from_the_server_section(tmp_path: Path) -> None:
    defaults = load_settings(write(tmp_path, ""), {})
    assert (defaults.abandoned_stream_s, defaults.abandoned_stream_bytes) == (
        300.0, 16 * 1024 * 1024)
    path = write(tmp_path, "server: {abandoned_stream_s: 0, abandoned_stream_bytes: 1024}\n")
    settings = load_settings(path, {})
    assert (settings.abandoned_stream_s, settings.abandoned_stream_bytes) == (0.0, 1024)
