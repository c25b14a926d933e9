"""Retraining: the promotion rule, promote/rollback on the store, and one whole retrain on a tiny model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from backend import calibration
from backend.catalog import acceptance_by_version, catalog, describe
from backend.cli import _version_line
from backend.errors import NotEnoughAnnotations, NothingToRollBack, ProjectNotFound
from backend.holdout import Holdout
from backend.lines import promote, rollback
from backend.model.classifier import SentimentClassifier
from backend.model.loading import load_version
from backend.retraining import RetrainPolicy, decide, retrain
from backend.store import ModelStore
from backend.training import TrainParams
from tests.jobs.fakes import FakeStudio, exported_task, learnable_text
from tests.modelfactory import build_distilbert

pytestmark = pytest.mark.unit

POLICY = RetrainPolicy(TrainParams(epochs=6, learning_rate=3e-3, batch_size=16), min_annotations=20,
                       holdout_fraction=0.25, min_holdout=20)


def metrics(accuracy: float, log_loss: float = 0.5) -> dict[str, float]:
    return {"accuracy": accuracy, "log_loss": log_loss}


@pytest.mark.parametrize(("candidate", "current", "rows", "margin", "promoted"), [
    (0.9, 0.8, 100, 0.0, True),
    (0.79, 0.8, 100, 0.0, False),
    (0.79, 0.8, 100, -0.02, True),   # a negative margin tolerates a small loss
    (0.85, 0.8, 100, 0.1, False),    # a positive margin asks for a real gain
    (0.9, 0.5, 10, 0.0, False),      # too few holdout rows to tell
])
def test_the_promotion_rule(candidate: float, current: float, rows: int, margin: float, promoted: bool) -> None:
    policy = RetrainPolicy(TrainParams(), min_holdout=20, margin=margin)
    decision = decide(metrics(candidate), metrics(current), rows, policy)
    assert decision.promote is promoted and not decision.forced
    assert ("TRAIN_MIN_HOLDOUT" in decision.reason) is (rows < 20)


def test_a_tie_goes_to_the_lower_log_loss_and_force_overrides_a_refusal() -> None:
    policy = RetrainPolicy(TrainParams(), min_holdout=1)
    assert decide(metrics(0.8, 0.4), metrics(0.8, 0.5), 50, policy).promote
    refused = decide(metrics(0.8, 0.6), metrics(0.8, 0.5), 50, policy)
    assert not refused.promote and "log-loss" in refused.reason
    forced = decide(metrics(0.8, 0.6), metrics(0.8, 0.5), 50, policy, force=True)
    assert forced.promote and forced.forced and forced.reason.startswith("forced:")


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    store.publish(build_distilbert(tmp_path / "random"), {"source": "random tiny"}, name="random")
    return store


def labelled(n: int, *, shuffle: set[int] | None = None, seed: int = 0) -> list[dict[str, object]]:
    """n learnable tasks (ids 1..n) annotated with their true label, or a random one for the tasks in `shuffle`."""
    truth = [i % 2 == 0 for i in range(n)]
    rng = random.Random(seed)
    shown = [rng.random() < 0.5 if shuffle and i + 1 in shuffle else t for i, t in enumerate(truth)]
    return [exported_task(i + 1, learnable_text(i, truth[i]), "Positive" if shown[i] else "Negative")
            for i in range(n)]


def run(store: ModelStore, studio: FakeStudio, **kw: object) -> object:
    loaded: dict[str, SentimentClassifier] = {}

    def classifier_of(version: str) -> SentimentClassifier:  # as the worker's cache loads them: at their temperature
        return loaded.setdefault(version, load_version(store.get(version), device="cpu", token_budget=2048, stride=128))

    return retrain(studio, store, 1, kw.pop("policy", POLICY), classifier_of=classifier_of,  # type: ignore[arg-type]
                   load_candidate=SentimentClassifier.from_path, **kw)  # type: ignore[arg-type]


def test_a_candidate_better_on_the_holdout_is_published_and_promoted_with_its_record(store: ModelStore) -> None:
    parent = store.current_version()
    phases: list[str] = []
    outcome = run(store, FakeStudio(0, exported=labelled(160)), report=lambda phase, **_: phases.append(phase))
    assert outcome.promoted, outcome.decision  # type: ignore[attr-defined]
    current = store.current(1)
    assert current is not None and current.version == outcome.candidate != parent  # type: ignore[attr-defined]
    assert store.current_version() == parent and store.current_version(2) == parent  # only project 1's line moved
    meta = current.meta
    assert meta["parent"] == parent and meta["status"] == "promoted" and meta["kind"] == "retrain"
    assert meta["counts"]["annotations"] == 160 and meta["counts"]["holdout"] >= 20
    assert meta["metrics"]["holdout"]["accuracy"] > meta["compared_metrics"]["holdout"]["accuracy"]
    assert set(meta["metrics"]["holdout"]) >= {"accuracy", "macro_f1", "log_loss", "ece", "confusion"}
    assert len(meta["data_hash"]) == 16
    calib = meta["calibration"]  # ≥ 100 training rows: a validation slice, so a fitted temperature
    assert calib["calibrated"] is True and calib["temperature"] > 0
    assert calib["fitted_on"]["rows"] == meta["counts"]["validation"] >= 20
    assert calib["measured_on"] == "the project holdout"
    assert calib["before"]["rows"] == calib["after"]["rows"] == meta["counts"]["holdout"]
    assert calib["after"]["log_loss"] <= calib["before"]["log_loss"] + 0.05  # held-out rows: no guarantee, no blow-up
    # the candidate was judged as it serves: its holdout metrics are the calibrated ones
    assert meta["metrics"]["holdout"]["ece"] == pytest.approx(calib["after"]["ece"], abs=1e-6)
    assert meta["metrics"]["holdout"]["log_loss"] == pytest.approx(calib["after"]["log_loss"], abs=1e-6)
    assert phases[0] == "loading annotations" and "training" in phases and phases[-1] == "promoting"
    assert store.history(1)[-1]["previous"] is None  # the project's first promotion made its line
    assert [h["version"] for h in store.history()] == [parent]


def test_shuffled_labels_are_rejected_and_the_current_version_stays(store: ModelStore) -> None:
    good = run(store, FakeStudio(0, exported=labelled(160)))
    assert good.promoted  # type: ignore[attr-defined]
    trained_on = Holdout(store.root, 1).load().train  # the holdout keeps its true labels: it is the yardstick
    bad = run(store, FakeStudio(0, exported=labelled(160, shuffle=trained_on)))
    assert not bad.promoted and "below the margin" in bad.decision.reason  # type: ignore[attr-defined]
    assert store.current_version(1) == good.candidate  # type: ignore[attr-defined]
    assert store.get(bad.candidate).meta["status"] == "rejected"  # type: ignore[attr-defined]
    # the holdout was frozen: both were compared on the same tasks
    assert bad.counts["holdout"] == good.counts["holdout"]  # type: ignore[attr-defined]


def test_too_few_annotations_or_an_unknown_project_fail_before_training(store: ModelStore) -> None:
    with pytest.raises(NotEnoughAnnotations, match="has 5 accepted annotation"):
        run(store, FakeStudio(0, exported=labelled(5)))
    with pytest.raises(ProjectNotFound):
        retrain(FakeStudio(0), store, 2, POLICY, classifier_of=lambda v: None,  # type: ignore[arg-type]
                load_candidate=SentimentClassifier.from_path)
    assert len(store.list()) == 1


def test_too_small_a_holdout_trains_but_does_not_promote_unless_forced(store: ModelStore) -> None:
    policy = RetrainPolicy(POLICY.params, min_annotations=20, holdout_fraction=0.25, min_holdout=1000)
    kept = run(store, FakeStudio(0, exported=labelled(60)), policy=policy)
    assert not kept.promoted and "TRAIN_MIN_HOLDOUT=1000" in kept.decision.reason  # type: ignore[attr-defined]
    forced = run(store, FakeStudio(0, exported=labelled(60)), policy=policy, force=True)
    assert forced.promoted and store.current_version(1) == forced.candidate  # type: ignore[attr-defined]


def test_too_few_rows_for_a_validation_slice_inherit_the_parents_temperature(store: ModelStore) -> None:
    parent = store.current_version()
    assert parent is not None
    store.update_meta(parent, calibration=calibration.fitted(1.7, "somewhere", 50))
    outcome = run(store, FakeStudio(0, exported=labelled(60)))
    meta = store.get(outcome.candidate).meta  # type: ignore[attr-defined]
    assert meta["counts"]["validation"] == 0 and meta["counts"]["train"] < 100
    assert meta["calibration"] == {
        "temperature": 1.7, "calibrated": False,
        "reason": f"no validation slice (fewer than 100 training rows): keeps the temperature of its parent {parent}"}
    assert load_version(store.get(outcome.candidate), device="cpu", token_budget=2048,  # type: ignore[attr-defined]
                        stride=128).temperature == 1.7
    line = _version_line(describe(store.get(outcome.candidate), None, {}))  # type: ignore[attr-defined]
    assert line.endswith("T=1.70 uncalibrated engine=torch")


def test_promote_and_rollback_move_current_and_keep_a_history(store: ModelStore, tmp_path: Path) -> None:
    first = store.current_version()
    second = store.publish(build_distilbert(tmp_path / "b", seed=1), {"status": "rejected"}, name="b",
                           make_current=False).version
    assert promote(store, second).version == second and store.get(second).meta["status"] == "promoted"
    assert rollback(store).version == first
    assert rollback(store, second).version == second
    assert [h["version"] for h in store.history()] == [first, second, first, second]
    with pytest.raises(NothingToRollBack, match="nothing to roll back"):
        rollback(ModelStore(tmp_path / "empty"))


def test_the_catalog_shows_acceptance_summed_over_projects(store: ModelStore) -> None:
    from backend.catalog import record_acceptance

    version = store.current_version()
    assert version is not None
    record_acceptance(store.root, 1, {version: {"kept": 3, "corrected": 1}})
    record_acceptance(store.root, 2, {version: {"kept": 1, "corrected": 3}})
    assert acceptance_by_version(store.root)[version] == {"kept": 4, "corrected": 4, "acceptance_rate": 0.5}
    listing = catalog(store)
    assert listing["current"] == version and listing["models"][0]["acceptance"]["kept"] == 4


def test_a_training_cancelled_before_the_switch_promotes_nothing(store: ModelStore) -> None:
    parent = store.current_version()

    def cancelled() -> None:
        raise RuntimeError("the run was cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        run(store, FakeStudio(0, exported=labelled(160)), may_promote=cancelled)
    assert store.current_version(1) == parent and not store.has_line(1)
    candidate = next(v for v in store.list() if v.version != parent)
    assert candidate.meta["status"] == "rejected" and "before the switch" in candidate.meta["decision"]["reason"]


def test_a_promotion_that_another_change_beat_keeps_the_candidate(store: ModelStore, tmp_path: Path) -> None:
    other = store.publish(build_distilbert(tmp_path / "o", seed=3), {}, name="other", make_current=False).version

    def moved_meanwhile() -> None:  # someone promoted by hand while this training ran
        store.set_current(other, project=1)

    outcome = run(store, FakeStudio(0, exported=labelled(160)),
                  report=lambda phase, **_: moved_meanwhile() if phase == "promoting" else None)
    assert not outcome.promoted and "another change won" in outcome.decision.reason  # type: ignore[attr-defined]
    assert store.current_version(1) == other
    assert store.get(outcome.candidate).meta["status"] == "rejected"  # type: ignore[attr-defined]


class Killed(BaseException):
    """Stands for SIGKILL at one point of a training: nothing after it runs, no except clause catches it."""


def test_a_kill_between_publishing_and_promoting_leaves_current_loadable(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store.current_version()

    def killed(*args: object, **kw: object) -> None:
        raise Killed

    monkeypatch.setattr(store, "set_current", killed)
    with pytest.raises(Killed):
        run(store, FakeStudio(0, exported=labelled(160)))
    assert store.current_version() == before
    candidate = next(v for v in store.list() if v.version != before)
    assert candidate.meta["status"] == "candidate"  # published whole, never made current
    current = store.current()
    assert current is not None and SentimentClassifier.from_path(current.path).predict(["fine"])


def test_a_kill_while_publishing_leaves_no_half_version_and_staging_is_cleaned_later(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import backend.store as store_module

    before = [v.version for v in store.list()]
    real_replace = store_module.os.replace

    def replace(src: object, dst: object) -> None:
        if "versions" in str(dst):
            raise Killed  # the rename that makes a version visible never happens
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.os, "replace", replace)
    monkeypatch.setattr(store_module.shutil, "rmtree", lambda *a, **k: None)  # a killed process cleans nothing
    with pytest.raises(Killed):
        run(store, FakeStudio(0, exported=labelled(160)))
    monkeypatch.undo()
    assert [v.version for v in store.list()] == before and store.current_version() == before[0]
    assert any(store.staging_root.iterdir())
    assert store.clean_staging(older_than_s=-1) >= 1 and not any(store.staging_root.iterdir())


def test_rehearsal_rows_join_training_but_never_the_holdout(store: ModelStore, tmp_path: Path) -> None:
    old_domain = tmp_path / "old.tsv"
    old_domain.write_text("text\tlabel\n" + "".join(f"{learnable_text(i, i % 2 == 0)}\t{1 - i % 2}\n"
                                                    for i in range(500, 900)), encoding="utf-8")
    policy = RetrainPolicy(POLICY.params, min_annotations=20, holdout_fraction=0.25, min_holdout=20,
                           rehearsal_file=old_domain, rehearsal_ratio=2.0)
    outcome = run(store, FakeStudio(0, exported=labelled(160)), policy=policy)
    counts = outcome.counts  # type: ignore[attr-defined]
    assert counts["rehearsal"] == 2 * counts["train"] and counts["annotations"] == 160
    assert outcome.candidate_metrics["n"] == counts["holdout"]  # type: ignore[attr-defined]
