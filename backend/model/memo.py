"""Predictions remembered for the length of one job: a classifier that predicts each distinct text once.

An assessment (backend.jobs.tasks.assess_project) scores the project's out-of-sample rows for the pre-fill
threshold and the label errors, then the evaluation report scores the same rows again; wrapping the versions'
classifiers for that one job makes the second pass free. Nothing outlives the job (a later job sees new versions
and new texts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from backend.model.types import Classifier, Prediction


class RememberingClassifier:
    """A Classifier that forwards each text it has not seen yet and answers the rest from memory."""

    def __init__(self, classifier: Classifier) -> None:
        self._classifier = classifier
        self._seen: dict[str, Prediction] = {}

    @property
    def labels(self) -> tuple[str, ...]:
        """The wrapped classifier's labels."""
        return self._classifier.labels

    def predict(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[Prediction]:
        """Classifier.predict; only the texts not predicted before reach the wrapped model (each once)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if missing:
            predicted = self._classifier.predict(missing, max_tokens=max_tokens)
            self._seen.update(zip(missing, predicted, strict=True))
        return [self._seen[t] for t in texts]


def remembering(classifier_of: Callable[[str], Classifier]) -> Callable[[str], Classifier]:
    """classifier_of with each version's classifier wrapped once in a RememberingClassifier."""
    wrapped: dict[str, RememberingClassifier] = {}

    def of(version: str) -> Classifier:
        if version not in wrapped:
            wrapped[version] = RememberingClassifier(classifier_of(version))
        return wrapped[version]

    return of
