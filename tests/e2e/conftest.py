"""End-to-end tests run the CLI as a user would, in a clean environment."""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """The CLI must not pick up the caller's config, DSN or PG* variables; and it runs in
    an empty folder, so no ./adhoc-gc.toml is found unless a test writes one."""
    for name in list(os.environ):
        if (name.startswith("ADHOC_GC_") and name != "ADHOC_GC_TEST_DSN") or name.startswith("PG"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty-cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)
