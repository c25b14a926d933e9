"""The one table from domain errors to HTTP statuses."""

from __future__ import annotations

import inspect

import pytest

from backend import errors
from backend.api.app import ERROR_STATUS, status_for

pytestmark = pytest.mark.unit


def test_every_domain_error_maps_to_its_documented_status() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.BackendError)]
    assert set(classes) == set(ERROR_STATUS)
    for cls in classes:
        assert status_for(cls.__new__(cls)) == cls.status  # the status depends on the class alone


def test_a_subclass_defined_later_keeps_its_own_status() -> None:
    class ConfigTooOld(errors.InvalidLabelingConfig):
        status = 418

    class Unspecified(errors.InvalidLabelingConfig):
        pass

    assert status_for(ConfigTooOld("x")) == 418
    assert status_for(Unspecified("x")) == 400
