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


def test_the_records_folder_must_be_private(tmp_path):
    # Whoever can write it can vouch for a planted template.
    from vmcoreos.errors import ConfigError

    record = state.TemplateRecord("uuid", "vm-1", "ab" * 64)
    state.remember_template("vc", "t", record, cache_root=tmp_path / "cache")
    (tmp_path / "cache" / "state").chmod(0o777)
    with pytest.raises(ConfigError, match="is not private"):
        state.template_record("vc", "t", cache_root=tmp_path / "cache")
    (tmp_path / "cache" / "state").chmod(0o700)
    (tmp_path / "cache").chmod(0o775)
    with pytest.raises(ConfigError, match="writable by group or others"):
        state.template_record("vc", "t", cache_root=tmp_path / "cache")


def test_template_records_honour_the_runs_cache_dir(tmp_path, monkeypatch):
    # --cache-dir (run.cache_dir) is where a run's template records live, not the default cache root.
    from types import SimpleNamespace

    from vmcoreos.cluster import template

    record = state.TemplateRecord("uuid-1", "vm-7", "cd" * 64)
    state.remember_template("vc", "lab-template", record, cache_root=tmp_path / "mine")
    run = SimpleNamespace(session=SimpleNamespace(vcenter_id="vc"), cache_dir=tmp_path / "mine", adopt_template=False,
                          reporter=SimpleNamespace(event=lambda *a: None), name="lab")
    vm = SimpleNamespace(name="lab-template", instance_uuid="uuid-1", moref="vm-7",
                         extra={"vmcoreos.image_sha512": "cd" * 64})
    monkeypatch.setenv("VMCOREOS_CACHE_DIR", str(tmp_path / "default"))  # not where this run keeps its records
    template._check_imported_here(run, vm)  # found under --cache-dir: trusted
