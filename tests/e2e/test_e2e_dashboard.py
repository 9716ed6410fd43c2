"""The dashboard in a real browser: headless Chromium (Debian's, driven by Selenium through
chromedriver) against a real `outlay serve` on loopback. An operator signs in with the admin
token, sees spend made through the gateway, revokes a key and decides approvals; every effect
is checked again through the admin API and the agent routes."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from .harness import ADMIN_TOKEN, Gateway, Launch, unique

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 5.0
AUTO_REFRESH_WAIT_S = 9.0  # the page refreshes every 5 s by itself
CONFIG = {"simulated": {"latency_ms": 0}}
MESSAGES = [{"role": "user", "content": "Say hello."}]
# Whoever mints a key chooses its name and labels: the page must show them as text.
HOSTILE_NAME = '<img src=x onerror="document.title=\'owned\'"><b>run</b>'
HOSTILE_LABEL = "<script>document.title='owned'</script>"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """Headless Chromium that can reach loopback only; quit whatever happens."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("the dashboard test needs Debian's chromium and chromium-driver "
                    "(scripts/test installs them as root)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--no-proxy-server",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(15)
        yield driver
    finally:
        driver.quit()


# -- helpers ---------------------------------------------------------------------------------

def wait(driver: WebDriver, timeout: float = WAIT_S) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=[NoSuchElementException,
                                             StaleElementReferenceException])


def shown(driver: WebDriver, css: str, timeout: float = WAIT_S) -> Any:
    """The first displayed element matching `css`, waited for."""
    def find(d: WebDriver) -> Any:
        element = d.find_element(By.CSS_SELECTOR, css)
        return element if element.is_displayed() else False
    return wait(driver, timeout).until(find, f"nothing displayed matches {css}")


def click(driver: WebDriver, css: str) -> None:
    """Click `css` once it is there, displayed and enabled; the page redraws, so a stale
    element is looked up again, and under load one not interactable yet is waited for."""
    def press(d: WebDriver) -> bool:
        element = d.find_element(By.CSS_SELECTOR, css)
        if not (element.is_displayed() and element.is_enabled()):
            return False
        try:
            element.click()
        except (ElementNotInteractableException, ElementClickInterceptedException):
            return False
        return True
    wait(driver).until(press, f"could not click {css}")


def text_of(driver: WebDriver, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def until_text(driver: WebDriver, css: str, expected: str | Callable[[str], bool],
               timeout: float = WAIT_S) -> None:
    def good(text: str) -> bool:
        return expected(text) if callable(expected) else text == expected
    try:
        wait(driver, timeout).until(lambda d: good(text_of(d, css)))
    except Exception as exc:
        raise AssertionError(f"{css}: {text_of(driver, css)!r}, expected {expected!r}") from exc


def row_cells(driver: WebDriver, row_css: str, first: str) -> list[str]:
    """The cells of the row under `row_css` whose first cell reads `first` ([] if none)."""
    try:
        for row in driver.find_elements(By.CSS_SELECTOR, row_css):
            cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            if cells and cells[0] == first:
                return cells
    except StaleElementReferenceException:
        pass
    return []


def token_kept(driver: WebDriver) -> Any:
    return driver.execute_script("return sessionStorage.getItem('outlay.adminToken')")


def sign_in(driver: WebDriver, gateway: Gateway, token: str = ADMIN_TOKEN) -> None:
    driver.get(f"{gateway.url}/ui/")
    field = shown(driver, "#token")
    field.clear()
    field.send_keys(token)
    click(driver, "#sign-in-button")


def go(driver: WebDriver, view: str) -> None:
    click(driver, f'#nav a[data-view="{view}"]')
    shown(driver, f"#view-{view}")


def page_errors(driver: WebDriver) -> list[str]:
    """Scripts that failed and anything the Content-Security-Policy refused."""
    return [e["message"] for e in driver.get_log("browser")
            if "Refused to" in e["message"] or "Uncaught" in e["message"]]


def chat(gateway: Gateway, key: str) -> Any:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=15)
    with client:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                              max_tokens=20)


def settled_report(gateway: Gateway, agent: str, requests: int) -> dict[str, Any]:
    """The agent's line of the spend report once `requests` calls are in it and settled."""
    deadline = time.monotonic() + WAIT_S
    while True:
        rows = gateway.admin.get("/admin/v1/reports", params={"group_by": "agent"}).json()["rows"]
        line = next((r for r in rows if r["agent"] == agent), None)
        usage = gateway.usage("global")
        if (line and line["requests"] == requests and line["cost_usd"] != "0"
                and all(b["reserved_usd"] == "0" for b in usage["budgets"])):
            return dict(line)
        assert time.monotonic() < deadline, (line, usage)
        time.sleep(0.05)


# -- the tests -------------------------------------------------------------------------------

def test_sign_in_refuses_a_wrong_token_and_signs_out(launch: Launch,
                                                      browser: WebDriver) -> None:
    gateway = launch(CONFIG)
    browser.get(f"{gateway.url}/ui")  # redirected to /ui/
    assert browser.current_url == f"{gateway.url}/ui/"
    assert shown(browser, "#sign-in-form")
    assert not browser.find_element(By.ID, "nav").is_displayed()

    sign_in(browser, gateway, "not-the-admin-token")
    until_text(browser, "#sign-in-error", lambda t: "Wrong admin token" in t)
    assert token_kept(browser) is None
    assert not browser.find_element(By.ID, "nav").is_displayed()
    assert browser.find_element(By.ID, "overview-global").text == ""

    sign_in(browser, gateway)
    shown(browser, "#view-overview")
    shown(browser, "#overview-global .usage")
    assert token_kept(browser) == ADMIN_TOKEN
    assert not browser.find_element(By.ID, "sign-in").is_displayed()
    browser.refresh()  # the session outlives a reload of the tab
    shown(browser, "#overview-global .usage")

    click(browser, "#sign-out")
    shown(browser, "#sign-in-form")
    until_text(browser, "#sign-in-error", "Signed out.")
    assert token_kept(browser) is None
    for holder in ("overview-global", "overview-report", "keys-list", "audit-list"):
        assert browser.find_element(By.ID, holder).get_attribute("childElementCount") == "0"
    assert page_errors(browser) == []


def test_spend_shows_and_a_key_is_revoked_from_the_browser(launch: Launch,
                                                            browser: WebDriver) -> None:
    filed = f"group:{unique('ui-filed')}"  # a policy the configuration file manages
    gateway = launch({**CONFIG, "policies": {filed: {"rpm": 1000}}})
    agent = unique("ui-agent")
    gateway.set_policy("global", {"budgets": [{"usd": 1000, "period": "month", "mode": "hard"}],
                                  "rpm": 600})
    gateway.set_policy(f"agent:{agent}", {"budgets": [{"usd": 5, "period": "day"}],
                                          "loop_guard": {"max_repeats": 20, "window_s": 60},
                                          "on_loop": "revoke"})
    minted = gateway.mint_key(agent, name=HOSTILE_NAME, labels={"run": HOSTILE_LABEL})
    key_id, secret = minted["id"], minted["key"]
    assert chat(gateway, secret).choices[0].message.content
    line = settled_report(gateway, agent, 1)

    sign_in(browser, gateway)
    # Overview: the agent's spend and the global budget and window, as the admin API has them
    until_text(browser, "#overview-report tbody",
               lambda _: row_cells(browser, "#overview-report tr.report-row", agent)[1:6]
               == ["1", "1", "0", f"${line['cost_usd']}", f"${line['out_usd']}"])
    [budget] = gateway.usage("global")["budgets"]
    month = row_cells(browser, "#overview-global tr.budget", "month · hard")
    assert month[1:5] == [f"${budget['spent_usd']}", "$0", "$1000", f"${budget['remaining_usd']}"]
    rpm = row_cells(browser, "#overview-global tr.window", "rpm")
    assert rpm[1:4] == ["1", "600", "599"]

    # auto-refresh: a second call shows up without a click
    chat(gateway, secret)
    line = settled_report(gateway, agent, 2)
    until_text(browser, "#overview-report tbody",
               lambda _: row_cells(browser, "#overview-report tr.report-row", agent)[1:5]
               == ["2", "2", "0", f"${line['cost_usd']}"], timeout=AUTO_REFRESH_WAIT_S)

    # Keys: the hostile name and label are shown as text, never run as markup
    go(browser, "keys")
    row = f'#keys-list tr[data-key-id="{key_id}"]'
    shown(browser, row)
    cells = row_cells(browser, "#keys-list tbody tr", key_id)
    assert cells[1] == agent
    assert cells[3] == HOSTILE_NAME
    assert cells[4] == f"run={HOSTILE_LABEL}"
    assert cells[7:9] == ["active", f"${line['cost_usd']}"]
    assert browser.find_elements(By.CSS_SELECTOR, "#keys-list img, #keys-list b, "
                                 "#keys-list script") == []
    assert browser.title == "Outlay"

    # the key's own usage on click
    click(browser, f"{row} button.usage-link")
    shown(browser, f'#keys-usage .usage[data-scope="key:{key_id}"]')
    by_model = gateway.usage(f"key:{key_id}")["spend_by_model"]
    assert list(by_model.values()) == [line["cost_usd"]]
    model, cost = next(iter(by_model.items()))
    until_text(browser, "#keys-usage .spend", lambda t: t.endswith(f": {model} ${cost}"))

    # revoke asks first; Cancel leaves the key alone
    click(browser, f"{row} button.revoke")
    click(browser, f"{row} button.confirm-no")
    shown(browser, f"{row} button.revoke")
    assert gateway.admin.get(f"/admin/v1/keys/{key_id}").json()["revoked_at"] is None
    # then the kill switch for real
    click(browser, f"{row} button.revoke")
    until_text(browser, f"{row} .confirm", lambda t: t.startswith(f"Revoke {key_id}?"))
    click(browser, f"{row} button.confirm-yes")
    until_text(browser, "#status", f"Key {key_id} revoked.")
    until_text(browser, f"{row} .badge", "revoked")

    assert gateway.admin.get(f"/admin/v1/keys/{key_id}").json()["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(gateway, secret)
    assert refused.value.status_code == 401
    assert refused.value.code == "key_revoked"

    # Policies: each scope with its usage
    go(browser, "policies")
    shown(browser, f'#policies-list .policy[data-scope="agent:{agent}"] .usage')
    card = browser.find_element(By.CSS_SELECTOR,
                                f'#policies-list .policy[data-scope="agent:{agent}"]')
    assert "$5 per day, hard" in card.text
    assert "same request at most 20 times per 60 s" in card.text  # loop_guard
    assert "revoke" in card.text  # on_loop
    assert card.find_elements(By.CSS_SELECTOR, ".managed") == []
    shown(browser, '#policies-list .policy[data-scope="global"]')
    until_text(browser, f'#policies-list .policy[data-scope="{filed}"] .managed',
               f"read-only managed by {gateway.config_path.resolve()}")

    # Audit: filtered by scope, the same entries as the admin API, newest first
    go(browser, "audit")
    field = shown(browser, "#audit-scope")
    field.send_keys(f"key:{key_id}")
    click(browser, "#audit-apply")
    expected = [e["request_id"] for e in gateway.audit(f"key:{key_id}")]
    assert len(expected) == 3  # two calls and the refusal of the revoked key
    wait(browser).until(lambda d: [r.get_attribute("data-request-id") for r in d.find_elements(
        By.CSS_SELECTOR, "#audit-list tr.audit-row")] == expected)
    field.clear()
    field.send_keys("no-such-scope")
    click(browser, "#audit-apply")
    until_text(browser, "#status", lambda t: "scope" in t.lower())
    assert page_errors(browser) == []


def test_approvals_are_decided_from_the_browser(launch: Launch, browser: WebDriver) -> None:
    gateway = launch(CONFIG)
    agent = unique("ui-held")
    gateway.set_policy(f"agent:{agent}", {
        "on_breach": "require_approval", "approval_wait_s": 0,
        "budgets": [{"usd": "0.000001", "period": "day", "mode": "hard"}]})
    secret = gateway.mint_key(agent)["key"]
    held = []
    for _ in range(2):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            chat(gateway, secret)
        body = refused.value.body
        assert isinstance(body, dict)
        assert body["code"] == "approval_required"
        held.append(body["approval_id"])
    yes, no = held

    sign_in(browser, gateway)
    go(browser, "approvals")
    for approval_id in held:
        shown(browser, f'#approvals-list tr[data-approval-id="{approval_id}"] button.approve')
    click(browser, f'#approvals-list tr[data-approval-id="{yes}"] button.approve')
    until_text(browser, "#status", f"Approval {yes} approved.")
    click(browser, f'#approvals-list tr[data-approval-id="{no}"] button.deny')
    until_text(browser, "#status", f"Approval {no} denied.")
    # decided approvals leave the pending list
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#approvals-list tr") == [])
    until_text(browser, "#approvals-list", "No approvals waiting.")
    Select(browser.find_element(By.ID, "approval-state")).select_by_visible_text("all")
    until_text(browser, f'#approvals-list tr[data-approval-id="{yes}"] .badge', "approved")
    until_text(browser, f'#approvals-list tr[data-approval-id="{no}"] .badge', "denied")

    assert gateway.admin.get(f"/admin/v1/approvals/{yes}").json()["state"] == "approved"
    assert gateway.admin.get(f"/admin/v1/approvals/{no}").json()["state"] == "denied"
    # the approved call goes through once; the denied one never
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0,
                           timeout=15)
    with client:
        passed = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=20,
            extra_headers={"X-Outlay-Approval": yes})
        assert passed.choices
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20,
                                           extra_headers={"X-Outlay-Approval": no})
    # what was approved, and the call that used it
    used_by = gateway.admin.get(f"/admin/v1/approvals/{yes}").json()["used_by"]
    Select(browser.find_element(By.ID, "approval-state")).select_by_visible_text("used")
    row = f'#approvals-list tr[data-approval-id="{yes}"]'
    until_text(browser, row, lambda t: used_by in t and f"budget_exceeded on agent:{agent}" in t
               and "POST /chat/completions" in t)

    # the kill switch over the whole agent, from the Keys view
    second = gateway.mint_key(agent)["id"]
    go(browser, "keys")
    row = f'#keys-agents tr[data-agent="{agent}"]'
    click(browser, f"{row} button.revoke-all")
    click(browser, f"{row} button.confirm-yes")
    until_text(browser, "#status", f"Revoked 2 key(s) of agent {agent}.")
    keys = gateway.admin.get("/admin/v1/keys", params={"agent": agent}).json()["keys"]
    assert len(keys) == 2
    assert second in {k["id"] for k in keys}
    assert all(k["revoked_at"] is not None for k in keys)
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, secret)
    assert page_errors(browser) == []


def test_the_page_loads_nothing_from_elsewhere(launch: Launch, browser: WebDriver) -> None:
    """Every resource the signed-in page loaded came from the gateway itself."""
    gateway = launch(CONFIG)
    sign_in(browser, gateway)
    shown(browser, "#overview-global .usage")
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls
    assert all(u.startswith(f"{gateway.url}/") for u in urls), urls
    assert page_errors(browser) == []
    answer = httpx.get(f"{gateway.url}/ui/", timeout=5)
    assert answer.status_code == 200
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_providers_show_every_endpoint_and_its_breaker(launch: Launch,
                                                       browser: WebDriver) -> None:
    gateway = launch(CONFIG)
    sign_in(browser, gateway)
    shown(browser, "#overview-global .usage")
    go(browser, "providers")
    answer = gateway.admin.get("/admin/v1/providers").json()
    assert {p["provider"] for p in answer["providers"]} == {
        "openai", "anthropic", "stripe", "twilio", "resend"}
    for p in answer["providers"]:
        row = f'#providers-list tr[data-provider="{p["provider"]}"]'
        until_text(browser, f"{row} .badge", p["state"])
        cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, f"{row} td")]
        assert cells == [p["kind"], p["provider"], p["base_url"], str(p["weight"]), p["state"],
                         str(p["consecutive_failures"]), "simulated" if p["simulated"] else "no"]
    # one worker: the page and this test were answered by the same process
    until_text(browser, "#providers-worker",
               lambda t: f"worker process {answer['worker']} " in t)
    assert page_errors(browser) == []


def test_keys_lists_a_page_of_the_newest(launch: Launch, browser: WebDriver) -> None:
    gateway = launch(CONFIG)
    agent = unique("many")
    made = [gateway.mint_key(agent)["id"] for _ in range(502)]  # the page holds 500
    gateway.revoke(made[-1])
    sign_in(browser, gateway)
    go(browser, "keys")
    until_text(browser, "#keys-more", lambda t: t.startswith("The newest 500 keys"))
    shown_ids = [row.get_attribute("data-key-id") for row in
                 browser.find_elements(By.CSS_SELECTOR, "#keys-list tr[data-key-id]")]
    assert shown_ids[:2] == [made[-1], made[-2]]  # newest first, the revoked one too
    assert made[0] not in shown_ids
    click(browser, "#show-inactive")  # usable keys only: asked of the gateway, not filtered
    wait(browser).until(lambda d: not d.find_elements(
        By.CSS_SELECTOR, f'#keys-list tr[data-key-id="{made[-1]}"]'))
    until_text(browser, "#keys-more", lambda t: t.startswith("The newest 500 keys"))
    shown_ids = [row.get_attribute("data-key-id") for row in
                 browser.find_elements(By.CSS_SELECTOR, "#keys-list tr[data-key-id]")]
    assert shown_ids[0] == made[-2]
    # the revoked key left its place to an older usable one: the page is the gateway's
    assert (made[1] in shown_ids, made[0] in shown_ids) == (True, False)
    assert page_errors(browser) == []


def test_money_a_payment_gave_back_shows_as_a_credit(launch: Launch,
                                                     browser: WebDriver) -> None:
    """A $20 authorization captured for $5 (the simulated Stripe): the audit shows the
    $15 given back as a row of its own."""
    gateway = launch(CONFIG)
    agent = unique("ui-payer")
    gateway.set_policy(f"agent:{agent}", {"budgets": [{"usd": 100, "period": "month"}]})
    secret = gateway.mint_key(agent)["key"]
    with httpx.Client(base_url=f"{gateway.url}/vendors/stripe/v1", timeout=15,
                      headers={"Authorization": f"Bearer {secret}"}) as stripe:
        held = stripe.post("/payment_intents", data={
            "amount": "2000", "currency": "usd", "capture_method": "manual",
            "confirm": "true", "payment_method": "pm_card_visa"}).json()
        captured = stripe.post(f"/payment_intents/{held['id']}/capture",
                               data={"amount_to_capture": "500"})
    assert captured.headers["x-outlay-returned-usd"] == "15"

    sign_in(browser, gateway)
    go(browser, "audit")
    shown(browser, "#audit-scope").send_keys(f"agent:{agent}")
    click(browser, "#audit-apply")
    credit = shown(browser, "#audit-list .badge.credit")
    assert credit.text == "credit"
    row = credit.find_element(By.XPATH, "./ancestor::tr")
    assert "−$15" in row.text
    assert page_errors(browser) == []


def test_a_policy_shows_what_each_vendor_allows(launch: Launch, browser: WebDriver) -> None:
    gateway = launch(CONFIG)
    scope = f"agent:{unique('ui-least')}"
    gateway.set_policy(scope, {
        "operations": {"stripe": ["POST /v1/payment_intents", "GET /v1/**"]},
        "accounts": {"stripe": ["acct_1Nabc"]},
        "destinations": {"twilio": ["US", "CA"], "resend": ["*@example.com"]},
        "budgets": [{"usd": 50, "period": "day", "flow": "out"}, {"usd": 5, "period": "day"}]})
    sign_in(browser, gateway)
    go(browser, "policies")
    card = f'#policies-list .policy[data-scope="{scope}"]'
    shown(browser, card)
    until_text(browser, card, lambda text: all(line in text for line in (
        "stripe: POST /v1/payment_intents, GET /v1/**", "stripe: acct_1Nabc",
        "twilio: US, CA", "resend: *@example.com",
        "$50 per day, hard, money out; $5 per day, hard")))


def test_money_moved_out_shows_apart_from_spend(launch: Launch, browser: WebDriver) -> None:
    """A $4 payment and a $3 refund of it (the simulated Stripe): the overview's report shows
    $4 of cost and $3 moved out on the agent's row."""
    gateway = launch(CONFIG)
    agent = unique("ui-refunder")
    gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": 10, "period": "day"}, {"usd": 10, "period": "day", "flow": "out"}]})
    secret = gateway.mint_key(agent)["key"]
    with httpx.Client(base_url=f"{gateway.url}/vendors/stripe/v1", timeout=15,
                      headers={"Authorization": f"Bearer {secret}"}) as stripe:
        charge = stripe.post("/charges", data={"amount": "400", "currency": "usd",
                                               "source": "tok_visa"}).json()
        refunded = stripe.post("/refunds", data={"charge": charge["id"], "amount": "300"})
    assert refunded.headers["x-outlay-cost-usd"] == "3", refunded.text

    sign_in(browser, gateway)
    until_text(browser, "#overview-report tbody",
               lambda _: row_cells(browser, "#overview-report tr.report-row", agent)[1:6]
               == ["2", "2", "0", "$4", "$3"])
    assert page_errors(browser) == []


def test_a_star_tag_policy_lists_each_value_s_spend(launch: Launch, browser: WebDriver) -> None:
    gateway = launch(CONFIG)
    secret = gateway.mint_key(unique("ui-tags"))["key"]
    gateway.set_policy("tag:customer=*", {"budgets": [{"usd": 2, "period": "day"}]})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0,
                           timeout=15)
    with client:
        for customer in ("acme", "acme", "beta"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                           max_tokens=20,
                                           extra_headers={"X-Outlay-Tags": f"customer={customer}"})
    lines = {v["value"]: v["budgets"][0] for v in gateway.usage("tag:customer=*")["values"]}
    assert set(lines) == {"acme", "beta"}
    sign_in(browser, gateway)
    go(browser, "policies")
    card = '#policies-list .policy[data-scope="tag:customer=*"]'
    shown(browser, card)
    until_text(browser, f"{card} .values-seen", lambda t: "Values seen this period: 2" in t)
    for value, line in lines.items():
        cells = row_cells(browser, f"{card} tr.tag-value", value)
        assert cells[1:6] == ["day", f"${line['spent_usd']}", "$0", "$2",
                              f"${line['remaining_usd']}"]
    acme, beta = (browser.find_element(By.CSS_SELECTOR, f"{card} tr.tag-value:nth-child({n})")
                  for n in (1, 2))
    assert (acme.text.split()[0], beta.text.split()[0]) == ("acme", "beta")  # most spent first


# -- a refusing scope, the audit table's width, the refusal filter ---------------------------

def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what
    Chromium's screenshots are), decoded without an imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, interlace = header[8], header[9], header[12]
    assert (depth, interlace) == (8, 0), header
    assert colour in (2, 6), header
    step = 4 if colour == 6 else 3
    raw, stride = zlib.decompress(idat), width * step
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc
                                      else corner)) & 0xFF
        rows.append(line)
        previous = line
    pixels = [(row[x], row[x + 1], row[x + 2]) for row in rows for x in range(0, stride, step)]
    return width, height, pixels


def reddish(pixels: list[tuple[int, int, int]]) -> int:
    return sum(1 for r, g, b in pixels if r > 150 and g < 90 and b < 90)


def test_a_refusing_scope_is_flagged_the_audit_fits_and_refusals_filter(
        launch: Launch, browser: WebDriver, tmp_path: Path) -> None:
    gateway = launch(CONFIG)
    agent = unique("ui-refused")
    scope = f"agent:{agent}"
    gateway.admin.post("/admin/v1/agents", json={"name": agent}).raise_for_status()
    gateway.set_policy(scope, {"clamp_max_tokens": False, "budgets": [
        {"usd": "0.01", "period": "day", "mode": "hard"}]})
    secret = gateway.mint_key(agent, name="a-rather-long-key-name-for-the-audit",
                              labels={"workflow": "nightly-reconciliation-of-ledgers",
                                      "run": "r-2026-12-06-000042"})["key"]
    for _ in range(3):
        chat(gateway, secret)
    with httpx.Client(base_url=f"{gateway.url}/v1", timeout=15) as http:
        refused = http.post("/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                            json={"model": "gpt-4o", "max_tokens": 4096, "messages": MESSAGES})
    assert refused.status_code == 402  # its $0.04 worst case: the meters still show little
    [budget] = gateway.usage(scope)["budgets"]
    assert Decimal(budget["spent_usd"]) < Decimal("0.005")

    sign_in(browser, gateway)
    go(browser, "policies")
    card_css = f'#policies-list .policy[data-scope="{scope}"]'
    flag = shown(browser, f"{card_css} .refusing")
    assert "budget_exceeded" in flag.text
    assert browser.find_element(By.CSS_SELECTOR, card_css).get_attribute(
        "data-refusing") == "budget_exceeded"
    shot = tmp_path / "refusing.png"
    flag_png = flag.screenshot_as_png
    shot.write_bytes(flag_png)
    width, height, pixels = png_pixels(flag_png)
    assert width > 0
    assert height > 0
    assert reddish(pixels) > 20, f"the flag is not red: {shot}"
    bar = browser.find_element(By.CSS_SELECTOR, f"{card_css} tr.budget .bar")
    bar_png = bar.screenshot_as_png
    (tmp_path / "refusing-bar.png").write_bytes(bar_png)
    assert reddish(png_pixels(bar_png)[2]) > 0, "the budget bar of a refusing scope is not red"

    go(browser, "audit")
    shown(browser, "#audit-list table.audit")
    entries = gateway.audit(scope)
    fits = browser.execute_script("""
        const wrap = document.querySelector('#audit-list .table-wrap');
        const table = wrap.querySelector('table');
        const last = table.querySelector('thead th:last-child').getBoundingClientRect();
        return {window: window.innerWidth, scroll: wrap.scrollWidth, client: wrap.clientWidth,
                right: table.getBoundingClientRect().right, lastRight: last.right,
                page: document.documentElement.scrollWidth};""")
    assert fits["window"] <= 1400
    assert fits["scroll"] <= fits["client"], fits  # no sideways scrolling in the table
    assert fits["right"] <= fits["window"], fits
    assert fits["lastRight"] <= fits["window"], fits
    assert fits["page"] <= fits["window"], fits
    table_png = browser.find_element(By.CSS_SELECTOR, "#audit-list table").screenshot_as_png
    (tmp_path / "audit.png").write_bytes(table_png)
    assert png_pixels(table_png)[0] <= 1400
    for label in ("cost", "spent / cap", "request"):
        header = browser.find_element(
            By.XPATH, f'//table[contains(@class,"audit")]//th[.="{label}"]')
        assert header.is_displayed()
        assert header.rect["x"] + header.rect["width"] <= 1400

    Select(shown(browser, "#audit-decision")).select_by_visible_text("refusals only")
    want = [e["request_id"] for e in entries if e["decision"] == "refused"]
    assert want
    wait(browser).until(lambda d: [r.get_attribute("data-request-id") for r in d.find_elements(
        By.CSS_SELECTOR, "#audit-list tr.audit-row")] == want)
    assert {r.get_attribute("data-decision") for r in browser.find_elements(
        By.CSS_SELECTOR, "#audit-list tr.audit-row")} == {"refused"}
    until_text(browser, "#audit-shown", lambda t: t.startswith(f"{len(want)} of the newest"))
    Select(shown(browser, "#audit-decision")).select_by_visible_text("every call")
    wait(browser).until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "#audit-list tr.audit-row")) > len(want))
    wait(browser).until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "#audit-list tr.audit-row")) == len(gateway.audit("global", 100)))

    # Providers: nothing is configured, so every upstream is marked simulated
    go(browser, "providers")
    shown(browser, '#providers-list tr[data-provider="stripe"][data-simulated="true"]')
    assert {r.get_attribute("data-simulated") for r in browser.find_elements(
        By.CSS_SELECTOR, "#providers-list tbody tr")} == {"true"}
    assert page_errors(browser) == []
