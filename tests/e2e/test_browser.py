"""What an annotator sees: the real Label Studio UI in headless Debian chromium shows our prediction pre-filled.

playwright's Python driver with the system browser (never `playwright install`); every request that is not to
the loopback Label Studio is aborted. The screenshot goes to test-artifacts/labeling-prefilled.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.e2e.conftest import ARTIFACTS, Backend, SentimentProject, Studio

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# the annotation tabs above the editor: ours is the one with the prediction (sparkles) picture
PREDICTION_TAB = ".lsf-annotation-button:has(.lsf-annotation-button__userpic_prediction)"
# checked Choice inputs with their label text; the Data Manager's row checkboxes have no text and drop out
CHECKED_CHOICES = """() => Array.from(document.querySelectorAll('input[type=checkbox], input[type=radio]'))
  .filter(i => i.checked)
  .map(i => ((i.closest('label') || i.parentElement).innerText || '').trim())
  .filter(text => text.length > 0)"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install -y chromium)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, label_studio: Studio) -> Iterator[Page]:
    """A logged-in page that can reach nothing but the loopback Label Studio."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})

    def loopback_only(route: Route) -> None:
        if route.request.url.startswith(label_studio.url):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", loopback_only)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(label_studio.url + "/user/login/")
    page.fill("input[name=email]", label_studio.server.email)
    page.fill("input[name=password]", label_studio.server.password)
    with page.expect_navigation():
        page.click("button[type=submit], input[type=submit]")
    assert "/user/login" not in page.url, "login failed"
    yield page
    context.close()


def label_of(text: str) -> str:
    """'Positive[1]' or 'Positive\\n1' (hotkey hint) -> 'Positive'."""
    match = re.match(r"[A-Za-z]+", text)
    return match.group(0) if match else text


def test_task_opens_with_our_prediction_checked(
    page: Page, label_studio: Studio, sentiment_project: SentimentProject, backend: Backend
) -> None:
    client = label_studio.client
    task_id = sentiment_project.task_ids[-1]  # not the one the webhook test annotates
    (prediction,) = client.predictions.list(task=task_id)
    predicted = prediction.result[0]["value"]["choices"][0]
    assert prediction.model_version == backend.version

    page.goto(f"{label_studio.url}/projects/{sentiment_project.id}/data?task={task_id}")
    page.wait_for_selector("input[type=checkbox], input[type=radio]", state="attached")
    page.wait_for_function(f"() => ({CHECKED_CHOICES})().length > 0")
    checked = [label_of(text) for text in page.evaluate(CHECKED_CHOICES)]
    tab = page.locator(PREDICTION_TAB)
    tab.wait_for(state="visible")
    page.wait_for_timeout(1000)  # let the panel settle for the picture
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "labeling-prefilled.png"))

    assert checked == [predicted], f"checked {checked}, our backend predicted {predicted}"
    # the tab abbreviates long names ("checkpoi...102618"); hovering it shows the whole model_version
    shown = tab.locator(".lsf-annotation-button__name").inner_text()
    assert shown in (backend.version, f"{backend.version[:8]}...{backend.version[-6:]}"), shown
    tab.locator(".lsf-annotation-button__name").hover()
    tooltip = page.locator(".lsf-annotation-button__tooltipContainerTitle")
    assert tooltip.inner_text().strip() == backend.version
    assert prediction.score is not None
    score = tab.locator("[title^='Prediction score']")
    title = score.get_attribute("title") or ""  # "Prediction score = 0.503422"
    assert float(title.split("=")[1]) == pytest.approx(prediction.score, abs=1e-6), title
    assert f"{prediction.score * 100:.2f}%" in score.inner_text()
