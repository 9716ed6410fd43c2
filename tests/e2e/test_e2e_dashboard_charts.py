"""The overview's charts in a real browser, from calls made through a real `outlay serve`:
spend over time stacked by vendor and by model, refusals by code, the projection against the
global cap, and the workflows and runs that spent most. Each chart is checked as the page
drew it (SVG bars with their series and figures) and as it looks (a screenshot of it is not
one flat colour)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from .harness import Gateway, Launch, unique
from .test_e2e_dashboard import (
    CONFIG,
    browser,  # noqa: F401 (the fixture)
    click,
    page_errors,
    png_pixels,
    shown,
    sign_in,
    until_text,
    wait,
)

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-4o-mini", "max_tokens": 20,
        "messages": [{"role": "user", "content": "Say hello."}]}
EMAIL = {"from": "a@example.com", "to": ["b@example.com"], "subject": "hi", "html": "<p>hi</p>"}


def bars(driver: WebDriver, css: str) -> list[dict[str, str]]:
    """The bars of the chart under `css`: their series (or name) and value."""
    found: list[dict[str, str]] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' svg.chart rect.mark')]"
        ".map((b) => ({series: b.dataset.series || b.dataset.name || '',"
        " value: b.dataset.value || ''}));", css)
    return found


def until_bars(driver: WebDriver, css: str, series: set[str]) -> None:
    try:
        wait(driver, 10).until(lambda d: series <= {b["series"] for b in bars(d, css)})
    except Exception as exc:
        raise AssertionError(f"{css}: no bars of {series}; got {bars(driver, css)}") from exc


# each mark of a chart as laid out: its centre in the chart, its height drawn and as its
# attribute says (scaled as the chart is), and its fill
_MARKS = """
const chart = document.querySelector(arguments[0] + " svg.chart");
const box = chart.getBoundingClientRect();
const scale = box.width / chart.viewBox.baseVal.width;
return [...chart.querySelectorAll("rect.mark")].map((r) => {
  const b = r.getBoundingClientRect();
  const seen = b.width >= 2 && b.height >= 2
    && document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2) === r;
  return [b.left - box.left + b.width / 2, b.top - box.top + b.height / 2, b.height,
          r.height.baseVal.value * scale, r.getAttribute("fill"), seen];
});
"""


def colours_in(driver: WebDriver, css: str, shot: Path) -> int:
    """How many colours a screenshot of the chart under `css` holds, once every bar is seen
    in it where and as tall as the chart says, in its colour (a stylesheet must not
    reshape a bar)."""
    png = driver.find_element(By.CSS_SELECTOR, f"{css} svg.chart").screenshot_as_png
    shot.write_bytes(png)
    width, height, pixels = png_pixels(png)
    assert width > 100
    assert height > 20
    seen = 0
    for x, y, drawn, said, fill, on_top in driver.execute_script(_MARKS, css):
        assert abs(drawn - said) < 1.5, (css, drawn, said)
        if not on_top:
            continue  # under another mark (spent over projected), or too thin to sample
        seen += 1
        want = tuple(int(fill[i:i + 2], 16) for i in (1, 3, 5))
        got = pixels[int(y) * width + int(x)]
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 24, (css, got, fill)
    assert seen, f"{css}: no bar is seen"
    return len(set(pixels))


def spend(gateway: Gateway) -> None:
    """Calls of two vendors, two workflows and runs, and refusals of one code."""
    agent = unique("charted")
    gateway.set_policy(f"agent:{agent}", {"rpm": 4})
    key = gateway.mint_key(agent, labels={"run": "r-1"})["key"]
    other = gateway.mint_key(agent, labels={"run": "r-2"})["key"]
    with httpx.Client(base_url=gateway.url, timeout=15) as client:
        for secret, workflow in ((key, "nightly-billing"), (key, "nightly-billing"),
                                 (other, "support")):
            answer = client.post("/v1/chat/completions", json=CHAT, headers={
                "Authorization": f"Bearer {secret}", "X-Outlay-Tags": f"workflow={workflow}"})
            assert answer.status_code == 200, answer.text
        sent = client.post("/vendors/resend/emails", json=EMAIL,
                           headers={"Authorization": f"Bearer {other}"})
        assert sent.status_code == 200, sent.text
        refused = client.post("/v1/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 429, refused.text


def test_the_overview_charts_spend_refusals_projection_and_top_labels(
        launch: Launch, browser: WebDriver, tmp_path: Path) -> None:  # noqa: F811
    gateway = launch(CONFIG)
    # a cap near the spend, so that the projection's bars are wide enough to be seen
    gateway.set_policy("global", {"budgets": [{"usd": 0.02, "period": "month", "mode": "hard"}]})
    spend(gateway)
    sign_in(browser, gateway)
    # still pictures: the projection moves with the clock, so every refresh redraws
    click(browser, "#auto-refresh")
    shown(browser, "#overview-charts")

    until_bars(browser, "#chart-spend", {"openai", "resend"})
    drawn = bars(browser, "#chart-spend")
    assert all(float(b["value"]) > 0 for b in drawn)
    chart = browser.find_element(By.CSS_SELECTOR, "#chart-spend svg.chart")
    assert int(chart.get_attribute("data-bars")) == len(drawn) >= 2
    assert colours_in(browser, "#chart-spend", tmp_path / "spend-by-vendor.png") > 2

    Select(browser.find_element(By.ID, "series-split")).select_by_value("model")
    until_bars(browser, "#chart-spend", {"gpt-4o-mini"})
    Select(browser.find_element(By.ID, "series-interval")).select_by_value("hour")
    until_text(browser, "#chart-spend", lambda _: browser.find_element(
        By.CSS_SELECTOR, "#chart-spend svg.chart").get_attribute("aria-label")
        == "Spend per hour by model")
    until_bars(browser, "#chart-spend", {"gpt-4o-mini"})
    assert colours_in(browser, "#chart-spend", tmp_path / "spend-by-model.png") > 2

    until_bars(browser, "#chart-refusals", {"rate_limit_exceeded"})
    assert sum(float(b["value"]) for b in bars(browser, "#chart-refusals")) == 1
    assert colours_in(browser, "#chart-refusals", tmp_path / "refusals.png") > 2

    usage = gateway.usage("global")
    [budget] = usage["budgets"]
    assert budget["projected_usd"] is not None
    wait(browser, 10).until(lambda d: bars(d, "#chart-projection"))
    projection = browser.find_element(By.ID, "chart-projection").text
    assert "of $0.02" in projection
    # the run rate: when the cap would be hit, if it would be this month
    assert ("At this rate a hard cap is reached at" in projection) == (
        usage["exhausted_at"] is not None)
    assert colours_in(browser, "#chart-projection", tmp_path / "projection.png") > 2

    until_bars(browser, "#chart-workflows", {"nightly-billing", "support"})
    workflows = bars(browser, "#chart-workflows")
    assert workflows[0]["series"] == "nightly-billing"  # the dearest first
    until_bars(browser, "#chart-runs", {"r-1", "r-2"})
    assert colours_in(browser, "#chart-runs", tmp_path / "runs.png") > 2
    assert page_errors(browser) == []


def test_no_spend_draws_no_bars_and_says_so(launch: Launch,
                                            browser: WebDriver) -> None:  # noqa: F811
    gateway = launch(CONFIG)
    sign_in(browser, gateway)
    until_text(browser, "#chart-spend", "No spend in the last 30 days.")
    until_text(browser, "#chart-refusals", "No refusals in the last 30 days.")
    until_text(browser, "#chart-projection", lambda t: t.startswith("No global budgets"))
    assert browser.find_elements(By.CSS_SELECTOR, "#overview-charts rect.mark") == []
    assert page_errors(browser) == []
