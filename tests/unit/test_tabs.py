"""tabs: the three review queues' view data, and a refresh that only ever touches the tabs it made."""

from __future__ import annotations

import pytest

from backend import tabs
from tests.jobs.fakes import FakeStudio

pytestmark = pytest.mark.unit


def test_the_three_tabs_filter_what_they_say() -> None:
    uncertain, errors, audit = tabs.tab_specs(0.8, [11, 12], [30], "v1")
    assert uncertain["title"] == "Uncertain" and uncertain["ordering"] == ["tasks:predictions_score"]
    assert uncertain["filters"]["items"] == [
        {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
        {"filter": "filter:tasks:predictions_score", "operator": "less", "type": "Number", "value": 0.8}]
    assert errors["title"] == "Likely label errors" and errors["filters"]["items"][0]["value"] == "11,12"
    assert audit["filters"]["items"][0] == {"filter": "filter:tasks:annotations_ids", "operator": "contains",
                                            "type": "String", "value": "30"}
    no_threshold, empty, _ = tabs.tab_specs(None, [], [], "v1")
    assert no_threshold["title"] == "Uncertain (no threshold yet)" and len(no_threshold["filters"]["items"]) == 1
    assert empty["filters"]["items"][0]["value"] == tabs.NOTHING  # an empty tab, never an unfiltered one


def test_the_audit_sample_is_about_two_percent_seeded_and_never_empty_when_there_is_something() -> None:
    ids = list(range(1, 501))
    first = tabs.audit_sample(ids, seed=3)
    assert len(first) == 10 and set(first) <= set(ids) and first == tabs.audit_sample(list(reversed(ids)), seed=3)
    assert tabs.audit_sample([7], seed=3) == [7] and tabs.audit_sample([], seed=3) == []


def test_a_refresh_updates_its_own_tabs_and_never_a_persons() -> None:
    studio = FakeStudio()
    studio.saved_views[1] = {"title": "Uncertain", "filters": {}}  # a person's tab of the same name
    first = tabs.refresh(studio, 1, tabs.tab_specs(0.8, [11], [30], "v1"))  # type: ignore[arg-type]
    assert first == {"Uncertain": "created", "Likely label errors": "created", "Audit sample": "created"}
    assert studio.saved_views[1] == {"title": "Uncertain", "filters": {}}
    again = tabs.refresh(studio, 1, tabs.tab_specs(0.9, [12], [30], "v2"))  # type: ignore[arg-type]
    assert set(again.values()) == {"updated"} and len(studio.saved_views) == 4
    ours = {v["sentiment_backend"]["tab"]: v for k, v in studio.saved_views.items() if k != 1}
    uncertain = ours["Uncertain"]
    assert uncertain["filters"]["items"][1]["value"] == 0.9 and uncertain["sentiment_backend"]["version"] == "v2"
    writes = len(studio.calls)
    same = tabs.refresh(studio, 1, tabs.tab_specs(0.9, [12], [30], "v2"))  # type: ignore[arg-type]
    assert set(same.values()) == {"unchanged"} and studio.calls[writes:] == ["views"]  # read, nothing written
    del studio.saved_views[2]  # a person deletes our "Uncertain": it comes back at the next refresh
    assert tabs.refresh(studio, 1, tabs.tab_specs(0.9, [], [], "v2"))["Uncertain"] == "created"  # type: ignore[arg-type]
