"""GET /models/{version}/report: the stored evaluation page as text/html, a JSON 404 when none is stored."""

from __future__ import annotations

import pytest

from backend import report
from tests.api.conftest import Backend, assert_no_traceback

pytestmark = pytest.mark.api

PAGE = "<!DOCTYPE html>\n<html><body><h1>stored report</h1></body></html>\n"


def test_the_stored_page_is_served_as_html(backend: Backend) -> None:
    report.save(backend.store.root, 4, backend.version, PAGE)
    response = backend.client.get(f"/models/{backend.version}/report", params={"project": 4})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == PAGE
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_no_stored_page_is_a_json_404(backend: Backend) -> None:
    report.save(backend.store.root, 4, backend.version, PAGE)
    response = backend.client.get(f"/models/{backend.version}/report", params={"project": 5})
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/json")
    assert "no evaluation report is stored" in response.json()["detail"]
    assert_no_traceback(response.text)


def test_the_project_is_required_and_the_version_checked(backend: Backend) -> None:
    assert backend.client.get(f"/models/{backend.version}/report").status_code == 422
    assert backend.client.get("/models/..%2F..%2Fetc/report", params={"project": 4}).status_code in (404, 422)
