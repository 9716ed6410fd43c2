"""The dashboard's policy view shows a queueing policy with how long its calls wait."""

from __future__ import annotations

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from .harness import Launch, unique
from .test_e2e_dashboard import CONFIG, go, page_errors, sign_in, until_text
from .test_e2e_dashboard import browser as browser  # the fixture: headless Chromium

pytestmark = pytest.mark.e2e


def test_a_queueing_policy_shows_its_wait(launch: Launch, browser: WebDriver) -> None:
    gateway = launch(CONFIG)
    queued, plain = f"agent:{unique('ui-queue')}", f"agent:{unique('ui-reject')}"
    gateway.set_policy(queued, {"rpm": 60, "on_rate_limit": "queue", "queue_max_wait_s": 45})
    gateway.set_policy(plain, {"rpm": 60})
    sign_in(browser, gateway)
    go(browser, "policies")
    field = '#policies-list .policy[data-scope="{}"] [data-field="on_rate_limit"] dd'
    until_text(browser, field.format(queued), "queue, up to 45 s")
    until_text(browser, field.format(plain), "")  # reject, the default, is not shown
    assert page_errors(browser) == []
