"""The dashboard with a scoped admin token, in a real browser: it says who is signed in,
shows only the token's fleet, offers no action its role may not take, and shows the admin
audit of that fleet."""

from __future__ import annotations

import json

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .harness import ADMIN_TOKEN, Launch, unique
from .test_e2e_dashboard import (
    CONFIG,
    browser,  # noqa: F401 (the fixture)
    click,
    go,
    page_errors,
    shown,
    sign_in,
    until_text,
)

pytestmark = pytest.mark.e2e


def test_a_scoped_token_sees_and_does_only_what_it_may(launch: Launch,
                                                       browser: WebDriver) -> None:  # noqa: F811
    gateway = launch(CONFIG)
    ours, theirs = unique("ours"), unique("theirs")
    root = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=f"{gateway.url}/admin/v1", headers=root, timeout=15) as admin:
        for group in (ours, theirs):
            assert admin.post("/agents", json={"name": f"{group}-bot", "group": group}
                              ).status_code == 201
            assert admin.post("/keys", json={"agent": f"{group}-bot"}).status_code == 201
            assert admin.put(f"/policies/group:{group}", json={"rpm": 7}).status_code == 200
        tokens = {role: admin.post("/admin-tokens", json={
            "name": f"{role}-of-{ours}", "role": role, "scopes": [f"group:{ours}"]}
            ).json()["token"] for role in ("viewer", "operator")}

    sign_in(browser, gateway, tokens["viewer"])
    until_text(browser, "#whoami", f"viewer-of-{ours} · viewer · group:{ours}")
    until_text(browser, "#overview-global", lambda t: f"acts on group:{ours} only" in t)
    go(browser, "keys")
    shown(browser, f'#keys-agents tr[data-agent="{ours}-bot"]')
    assert browser.find_elements(By.CSS_SELECTOR, f'#keys-agents tr[data-agent="{theirs}-bot"]'
                                 ) == []
    assert theirs not in browser.find_element(By.ID, "keys-list").text
    assert browser.find_elements(By.CSS_SELECTOR, "button.revoke, button.revoke-all") == []
    assert not browser.find_element(By.ID, "keys-mint").is_displayed()
    go(browser, "policies")
    shown(browser, f'#policies-list .card.policy[data-scope="group:{ours}"]')
    assert browser.find_elements(By.CSS_SELECTOR, "button.edit-policy") == []
    assert not browser.find_element(By.ID, "policy-new-form").is_displayed()
    # and the admin API refuses the viewer's writes, whatever the page offers
    for method, path, body in (("POST", "/keys", {"agent": f"{ours}-bot"}),
                               ("PATCH", f"/policies/group:{ours}", {"rpm": 1})):
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/admin/v1' + arguments[1], {method: arguments[0], body: arguments[2],"
            " headers: {Authorization: 'Bearer ' + sessionStorage.getItem('outlay.adminToken'),"
            " 'Content-Type': 'application/json'}}).then((r) => done(r.status));",
            method, path, json.dumps(body))
        assert status == 403, (method, path)
    go(browser, "admin-audit")
    shown(browser, f'#admin-audit-list tr[data-target="policy:group:{ours}"]')
    assert theirs not in browser.find_element(By.ID, "admin-audit-list").text

    click(browser, "#sign-out")
    sign_in(browser, gateway, tokens["operator"])
    until_text(browser, "#whoami", f"operator-of-{ours} · operator · group:{ours}")
    go(browser, "keys")
    shown(browser, "#keys-list button.revoke")
    shown(browser, f'#keys-agents tr[data-agent="{ours}-bot"] button.revoke-all')
    shown(browser, "#keys-mint")
    go(browser, "policies")
    shown(browser, f'#policies-list .card.policy[data-scope="group:{ours}"] button.edit-policy')
    assert page_errors(browser) == []
