"""What an annotator and an admin see: the real Label Studio UI in headless Debian chromium shows our prediction
pre-filled (with PREFILL=confident, only above the project's threshold), and the evaluation report opens offline.

playwright's Python driver with the system browser (never `playwright install`); every request that is not to
the loopback Label Studio (or, for the report, our backend) is aborted. Screenshots go to test-artifacts/:
labeling-prefilled.png, labeling-confident-under-threshold.png, labeling-confident-over-threshold.png,
evaluation-report.png.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, Route, sync_playwright

from backend import quality, report
from devtools.labelstudio_server import free_port
from tests.e2e.conftest import (
    ARTIFACTS,
    SENTIMENT_XML,
    Backend,
    SentimentProject,
    Studio,
    _stop,
    _wait_for_backend,
    cli_executable,
    connect_with_cli,
    sst2_dev_texts,
    task_ids,
)

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


@pytest.fixture(scope="module")
def confident_backend(e2e_dir: Path, backend: Backend) -> Iterator[Backend]:
    """A second `serve` on the session's store with PREFILL=confident."""
    port = free_port()
    handle = dataclasses.replace(backend, url=f"http://127.0.0.1:{port}", log_path=e2e_dir / "confident.log",
                                 env={**backend.env, "PREFILL": "confident"})
    with handle.log_path.open("ab") as out:
        process = subprocess.Popen([cli_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=handle.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait_for_backend(handle, process)
        yield handle
    finally:
        _stop(process)


def _scores(backend: Backend, texts: list[str]) -> list[float]:
    body = {"tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)],
            "label_config": SENTIMENT_XML.read_text()}
    reply = requests.post(f"{backend.url}/predict", json=body, auth=backend.auth, timeout=60)
    assert reply.status_code == 200, reply.text
    return [float(r["score"]) for r in reply.json()["results"]]


def _opened_choices(page: Page, url: str, shot: str) -> list[str]:
    page.goto(url)
    page.wait_for_selector("input[type=checkbox], input[type=radio]", state="attached")
    page.wait_for_timeout(2500)  # the prediction (or its absence) settles into the editor
    page.screenshot(path=str(ARTIFACTS / shot))
    return [label_of(text) for text in page.evaluate(CHECKED_CHOICES)]


def test_confident_prefill_opens_a_task_under_the_threshold_with_nothing_selected(
    page: Page, label_studio: Studio, confident_backend: Backend
) -> None:
    texts = sst2_dev_texts(40)
    scores = _scores(confident_backend, texts)
    ranked = sorted(range(len(texts)), key=lambda i: scores[i])
    low, high = ranked[0], ranked[-1]
    assert scores[high] - scores[low] > 2e-6, "the model scores every text alike"  # scores carry 6 decimals
    threshold = (scores[low] + scores[high]) / 2
    client = label_studio.client
    project = client.projects.create(title="e2e PREFILL=confident", label_config=SENTIMENT_XML.read_text())
    assert project.id is not None
    client.projects.import_tasks(id=project.id, request=[{"text": texts[low]}, {"text": texts[high]}])
    low_task, high_task = task_ids(client, project.id)
    # the assessment the worker would store (its computation is tested in the redis and e2e tiers)
    quality.save(confident_backend.model_dir, project.id, {
        "project": project.id, "version": confident_backend.version, "computed_at": "test", "rows_source": "test",
        "prefill": {"threshold": threshold, "coverage": 0.5, "rows": 200, "reason": "set by the test"},
        "label_errors": {"max_p": 0.1, "scored": 0, "found": 0, "parent": None, "rows": []}})
    connect_with_cli(label_studio, confident_backend, project.id)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"{label_studio.url}/projects/{project.id}/data?task="
    assert _opened_choices(page, base + str(low_task), "labeling-confident-under-threshold.png") == []
    high_choices = _opened_choices(page, base + str(high_task), "labeling-confident-over-threshold.png")
    # what Label Studio stored from /predict (opening a task in the browser can ask twice at once, Label Studio's
    # own race between its two task requests: each copy is checked; a bulk run's repair removes such copies)
    under = list(client.predictions.list(task=low_task))
    over = list(client.predictions.list(task=high_task))
    assert under and over
    assert all(p.result == [] and p.score == pytest.approx(scores[low], abs=1e-6) for p in under), under
    assert {p.model_version for p in under + over} == {confident_backend.version}
    assert {p.result[0]["value"]["choices"][0] for p in over} == set(high_choices) and len(high_choices) == 1


def test_the_evaluation_report_opens_offline_and_shows_its_plots(browser: Browser, backend: Backend) -> None:
    rows = [report.ScoredRow(label="POSITIVE" if i % 3 else "NEGATIVE", predicted="POSITIVE",
                             score=0.5 + (i % 50) / 100, raw_score=0.5 + (i % 50) / 90) for i in range(200)]
    data = report.ReportData(project=424242, version=backend.version, labels=("NEGATIVE", "POSITIVE"), rows=rows,
                             temperature=1.3, prefill={"threshold": 0.9, "coverage": 0.2, "rows": 200},
                             acceptance={backend.version: {"kept": 30, "corrected": 10, "acceptance_rate": 0.75}},
                             line=[report.LinePoint("parent-20260101-000000", "2026-01-01", "promoted", 0.81, 40),
                                   report.LinePoint(backend.version, "2026-12-01", "promoted", 0.86, 40)],
                             generated_at="test")
    report.save(backend.model_dir, 424242, backend.version, report.render(data))
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  http_credentials={"username": backend.user, "password": backend.password})
    offline: list[str] = []

    def ours_only(route: Route) -> None:
        if route.request.url.startswith(backend.url):
            route.continue_()
        else:
            offline.append(route.request.url)
            route.abort()

    context.route("**/*", ours_only)
    page = context.new_page()
    try:
        reply = page.goto(f"{backend.url}/models/{backend.version}/report?project=424242")
        assert reply is not None and reply.status == 200
        images = page.locator("img")
        assert images.count() == 6
        loaded = page.evaluate("() => Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert loaded == [True] * 6  # every plot decoded, from the page itself
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "evaluation-report.png"), full_page=True)
        assert offline == [], f"the page asked for {offline}"
    finally:
        context.close()
