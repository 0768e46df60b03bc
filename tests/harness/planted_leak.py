"""A test that leaks on purpose, run only by tests/test_leak_checks.py in a child pytest.

Its name does not match test_*.py, so the suite never collects it; the child
session names it explicitly and must then fail at session finish.
"""

from __future__ import annotations

from tests.harness.services import PASSWORD


def test_planted_leak():
    """Prints the password as a careless run would; the test passes, the session must not."""
    from tests.harness.runner import OUTPUT_LOG

    OUTPUT_LOG.append(f"connecting as vmcoreos-admin:{PASSWORD}")
