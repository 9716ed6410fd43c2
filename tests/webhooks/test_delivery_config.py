"""The gateway's deliverer runs as the configuration's `webhooks:` section says."""

from __future__ import annotations

from pathlib import Path

from outlay.gateway.app import create_app
from outlay.settings import Settings
from outlay.webhooks.delivery import DELIVERER


def test_the_app_delivers_with_the_configured_settings(tmp_path: Path) -> None:
    settings = Settings(state=f"sqlite:///{tmp_path / 'o.db'}", webhook_timeout_s=4.0,
                        webhook_concurrency=3, webhook_retry_hours=30.0,
                        webhook_retention_days=2.0)
    delivery = create_app(settings)[DELIVERER].settings
    assert (delivery.timeout_s, delivery.concurrency) == (4.0, 3)
    assert delivery.backoff.horizon_s == 30 * 3600
    assert delivery.retention_s == 2 * 86_400
