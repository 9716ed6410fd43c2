"""The writes an operator makes from the dashboard, in a real browser: minting a key (its secret
shown once, then gone from the page), editing a scope's policy; each confirmed first, and the
admin API's refusals shown. Every effect is checked again through the admin API and the
agent routes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .harness import Gateway, Launch, unique
from .test_e2e_dashboard import (
    CONFIG,
    browser,  # noqa: F401 (the fixture)
    chat,
    click,
    go,
    page_errors,
    shown,
    sign_in,
    text_of,
    until_text,
    wait,
)

pytestmark = pytest.mark.e2e


def fill(driver: WebDriver, css: str, value: str) -> None:
    field = shown(driver, css)
    field.clear()
    if value:
        field.send_keys(value)


def keys_of(gateway: Gateway, agent: str) -> list[dict[str, Any]]:
    return list(gateway.admin.get("/admin/v1/keys", params={"agent": agent}).json()["keys"])


def policy_of(gateway: Gateway, scope: str) -> dict[str, Any] | None:
    answer = gateway.admin.get(f"/admin/v1/policies/{scope}")
    return None if answer.status_code == 404 else dict(answer.json())


def test_a_key_is_minted_its_secret_shown_once(launch: Launch,
                                               browser: WebDriver) -> None:  # noqa: F811
    gateway = launch(CONFIG)
    agent = unique("minted")
    sign_in(browser, gateway)
    go(browser, "keys")
    fill(browser, "#mint-agent", agent)
    fill(browser, "#mint-name", "nightly")
    fill(browser, "#mint-labels", "team")
    click(browser, "#mint-submit")
    until_text(browser, "#mint-error", lambda t: "name=value pairs" in t)
    fill(browser, "#mint-labels", "team=billing, run=r-7")

    # the confirm step: cancelled, nothing is minted
    click(browser, "#mint-submit")
    until_text(browser, "#mint-confirm", lambda t: f"Mint a key for agent {agent}" in t)
    click(browser, "#mint-confirm button.confirm-no")
    assert not browser.find_element(By.ID, "mint-confirm").is_displayed()
    assert keys_of(gateway, agent) == []

    click(browser, "#mint-submit")
    click(browser, "#mint-confirm button.confirm-yes")
    shown(browser, "#mint-secret")
    secret = text_of(browser, "#mint-secret-value")
    assert secret.startswith("olk_")
    assert "shown only this once" in text_of(browser, "#mint-secret .warning")
    [key] = keys_of(gateway, agent)
    assert key["name"] == "nightly"
    assert key["labels"] == {"team": "billing", "run": "r-7"}
    assert text_of(browser, "#mint-secret-id") == key["id"]
    shown(browser, f'#keys-list tr[data-key-id="{key["id"]}"]')
    assert chat(gateway, secret).choices[0].message.content  # the secret works

    click(browser, "#mint-copy")
    until_text(browser, "#mint-copied", lambda t: t in (
        "Copied to the clipboard.", "Selected: press Ctrl+C (⌘C) to copy it."))
    click(browser, "#mint-done")
    wait(browser).until(lambda d: not d.find_element(By.ID, "mint-secret").is_displayed())
    assert secret not in browser.page_source  # shown once: gone from the page

    # the admin API's refusal is shown where it was asked
    fill(browser, "#mint-agent", agent)
    fill(browser, "#mint-ttl", "999999999999")  # past ten years
    click(browser, "#mint-submit")
    click(browser, "#mint-confirm button.confirm-yes")
    until_text(browser, "#mint-error", lambda t: "(invalid_request)" in t)
    assert "ttl_seconds" in text_of(browser, "#mint-error")
    assert not browser.find_element(By.ID, "mint-secret").is_displayed()
    assert len(keys_of(gateway, agent)) == 1
    assert page_errors(browser) == []


def edit(driver: WebDriver, scope: str, policy: str) -> str:
    """Open the editor of `scope`'s card, type `policy` and save: the card's CSS."""
    card = f'#policies-list .card.policy[data-scope="{scope}"]'
    if not driver.find_elements(By.CSS_SELECTOR, f"{card} textarea.policy-json"):
        click(driver, f"{card} button.edit-policy")
    area = shown(driver, f"{card} textarea.policy-json")
    area.clear()
    area.send_keys(policy)
    click(driver, f"{card} button.save-policy")
    return card


def test_a_policy_is_edited_with_a_confirm_step(launch: Launch,
                                                browser: WebDriver) -> None:  # noqa: F811
    gateway = launch(CONFIG)
    agent = unique("edited")
    gateway.mint_key(agent)
    scope = f"agent:{agent}"
    gateway.set_policy(scope, {"rpm": 7})
    sign_in(browser, gateway)
    go(browser, "policies")
    card = f'#policies-list .card.policy[data-scope="{scope}"]'
    click(browser, f"{card} button.edit-policy")
    area = shown(browser, f"{card} textarea.policy-json")
    shown_policy = json.loads(area.get_attribute("value"))
    assert shown_policy["rpm"] == 7
    assert "scope" not in shown_policy

    # bad JSON is named before anything is sent
    edit(browser, scope, "{rpm: 3")
    until_text(browser, f"{card} .policy-error", lambda t: t.startswith("Not valid JSON"))

    wanted = {**shown_policy, "rpm": 3,
              "budgets": [{"usd": 5, "period": "day", "mode": "hard"}]}
    edit(browser, scope, json.dumps(wanted))
    until_text(browser, f"{card} .confirm", lambda t: t.startswith(
        f"set rpm, set budgets on {scope}?"))
    click(browser, f"{card} button.confirm-no")
    assert policy_of(gateway, scope)["rpm"] == 7  # type: ignore[index]

    click(browser, f"{card} button.save-policy")
    click(browser, f"{card} button.confirm-yes")
    until_text(browser, "#status", f"Policy of {scope} saved.")
    saved = policy_of(gateway, scope)
    assert saved is not None
    assert saved["rpm"] == 3
    assert [(b["usd"], b["period"], b["mode"]) for b in saved["budgets"]] == [("5", "day", "hard")]

    # the admin API refuses: its message and code are shown on the card, nothing stored
    edit(browser, scope, json.dumps({**wanted, "rpm": -1}))
    click(browser, f"{card} button.confirm-yes")
    until_text(browser, f"{card} .policy-error", lambda t: "(invalid_policy)" in t)
    # dropping a budget needs drop_budgets, as in the API
    edit(browser, scope, json.dumps({**shown_policy, "rpm": 3}))
    until_text(browser, f"{card} .confirm", lambda t: t.startswith(f"remove budgets on {scope}"))
    click(browser, f"{card} button.confirm-yes")
    until_text(browser, f"{card} .policy-error", lambda t: "(budget_would_be_dropped)" in t)
    assert policy_of(gateway, scope)["budgets"]  # type: ignore[index]
    click(browser, f"{card} input.policy-drop")
    click(browser, f"{card} button.save-policy")
    click(browser, f"{card} button.confirm-yes")
    until_text(browser, "#status", f"Policy of {scope} saved.")
    assert "budgets" not in policy_of(gateway, scope)  # type: ignore[operator]

    # a scope without a policy gets one
    group = f"group:{unique('new-group')}"
    fill(browser, "#policy-new-scope", group)
    click(browser, "#policy-new")
    shown(browser, f'#policies-list .new-policy[data-scope="{group}"]')
    edit(browser, group, '{"rpm": 9}')
    click(browser, f'#policies-list [data-scope="{group}"] button.confirm-yes')
    until_text(browser, "#status", f"Policy of {group} saved.")
    assert policy_of(gateway, group)["rpm"] == 9  # type: ignore[index]
    shown(browser, f'#policies-list .card.policy[data-scope="{group}"] button.edit-policy')
    assert page_errors(browser) == []
