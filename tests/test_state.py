"""The host's record of imported templates: kept per vCenter, rewritten whole, refused when unreadable."""

from __future__ import annotations

import pytest

from vmcoreos import state
from vmcoreos.errors import ConfigError


def test_records_are_kept_per_vcenter_and_survive_later_writes(tmp_path):
    one = state.TemplateRecord("uuid-1", "vm-1", "a" * 128)
    two = state.TemplateRecord("uuid-2", "vm-2", "b" * 128)
    state.remember_template("vc-A", "lab-template-x", one, cache_root=tmp_path)
    state.remember_template("vc-B", "lab-template-x", two, cache_root=tmp_path)
    assert state.template_record("vc-A", "lab-template-x", cache_root=tmp_path) == one
    assert state.template_record("vc-B", "lab-template-x", cache_root=tmp_path) == two
    assert state.template_record("vc-A", "lab-template-y", cache_root=tmp_path) is None
    # Nothing but the file and its lock is left behind (the temporary file was renamed over it).
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["templates.json", "templates.json.lock"]
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0


def test_an_unreadable_record_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "templates.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"templates\.json.*destroy --templates"):
        state.template_record("vc", "t", cache_root=tmp_path)
