"""Which bed the fixtures build: VMCOREOS_TEST_PROFILE (services.strict_profile)."""

from __future__ import annotations

import pytest

from tests.harness.services import PROFILE_ENV, strict_profile


def test_the_bed_is_strict_unless_lenient_is_asked_for(monkeypatch):
    # The end-to-end suite runs where a real vCenter would fail it, unless told otherwise.
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert strict_profile() is True
    monkeypatch.setenv(PROFILE_ENV, "")
    assert strict_profile() is True
    monkeypatch.setenv(PROFILE_ENV, "lenient")
    assert strict_profile() is False
    monkeypatch.setenv(PROFILE_ENV, "strict")
    assert strict_profile() is True


def test_an_unknown_profile_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "Strict")
    with pytest.raises(RuntimeError, match=r"VMCOREOS_TEST_PROFILE='Strict': use strict or lenient"):
        strict_profile()
