"""StudioClient over the real SDK with a mocked transport: paging, and the one mapping of failures."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from label_studio_sdk import LabelStudio

from backend.errors import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable, ProjectNotFound
from backend.studio import StudioClient, studio_for

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK retries 429/5xx twice with a sleep in between: keep the retries, skip the waiting."""
    import label_studio_sdk.core.http_client as sdk_http

    monkeypatch.setattr(sdk_http.time, "sleep", lambda _s: None)


def client(handler: Callable[[httpx.Request], httpx.Response]) -> StudioClient:
    transport = httpx.MockTransport(handler)
    http = httpx.Client(transport=transport)
    sdk = LabelStudio(base_url="http://ls.test", api_key="0123456789abcdef", httpx_client=http)
    return StudioClient(sdk)


def test_task_versions_pages_until_the_total_and_splits_versions() -> None:
    pages: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        pages.append(page)
        assert request.url.params["include"] == "id,predictions_model_versions"
        tasks = [{"id": 2 * page - 1, "predictions_model_versions": "v1, v2"},
                 {"id": 2 * page, "predictions_model_versions": ""}][: 1 if page == 2 else 2]
        return httpx.Response(200, json={"total": 3, "tasks": tasks})

    found = list(client(handler).task_versions(7, page_size=2))
    assert found == [(1, frozenset({"v1", "v2"})), (2, frozenset()), (3, frozenset({"v1", "v2"}))]
    assert pages == [1, 2]  # never asks for the page past the end (Label Studio answers it with 404)


def test_tasks_reads_predictions_by_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.url.params["query"])
        assert query == {"selectedItems": {"all": False, "included": [5, 6]}}
        return httpx.Response(200, json={"total": 1, "tasks": [
            {"id": 5, "data": {"text": "hi"},
             "predictions": [{"id": 9, "model_version": "v1"}, {"id": 4, "model_version": "v1"}]},
        ]})

    (task,) = client(handler).tasks(1, [5, 6])
    assert task.data == {"text": "hi"} and task.prediction_ids("v1") == [4, 9] and task.prediction_ids("v2") == []


def test_tasks_without_data_asks_label_studio_for_ids_and_predictions_only() -> None:
    includes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        includes.append(request.url.params["include"])
        return httpx.Response(200, json={"total": 1, "tasks": [{"id": 5, "predictions": [{"id": 4, "model_version":
                                                                                          "v1"}]}]})

    (task,) = client(handler).tasks(1, [5], with_data=False)
    assert includes == ["id,predictions"] and task.data == {} and task.prediction_ids("v1") == [4]


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [(401, LabelStudioAuthError, "check LABEL_STUDIO_API_KEY"), (403, LabelStudioAuthError, "HTTP 403"),
     (404, ProjectNotFound, "has no project 3"), (502, LabelStudioUnavailable, "HTTP 502"),
     (429, LabelStudioUnavailable, "HTTP 429"), (400, LabelStudioError, "HTTP 400")],
)
def test_failures_map_to_domain_errors(status: int, error: type[Exception], text: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": "No Project matches the given query."})

    with pytest.raises(error, match=text) as caught:
        client(handler).project(3)
    assert "0123456789abcdef" not in str(caught.value)
    assert isinstance(caught.value, LabelStudioError) and caught.value.retryable == (status in (429, 502))


def test_a_connection_failure_is_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(LabelStudioUnavailable, match="unreachable"):
        list(client(handler).task_versions(1))


def test_deleting_a_prediction_that_is_gone_is_fine_other_errors_are_not() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        gone = request.url.path.rstrip("/").endswith("/1")
        return httpx.Response(404 if gone else 500, json={"detail": "x"})

    studio = client(handler)
    studio.delete_prediction(1)
    with pytest.raises(LabelStudioUnavailable):
        studio.delete_prediction(2)


def test_no_token_is_an_auth_error_naming_the_setting() -> None:
    with pytest.raises(LabelStudioAuthError, match="LABEL_STUDIO_API_KEY is not set"):
        studio_for("http://ls.test", None)
