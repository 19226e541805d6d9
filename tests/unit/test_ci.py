"""CI cannot pass with skipped tests: .ci/run sets $CI, and with $CI set the session fails
when any test was skipped (tests/conftest.py), naming each one.

The hooks are checked on a small suite of their own, run by pytester in a subprocess with
this project's conftest.py.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

SUITE = textwrap.dedent("""
    import pytest

    @pytest.fixture
    def needs_pg_cron():
        pytest.skip("pg_cron is not installed")

    def test_passes():
        pass

    def test_skipped_in_the_test():
        pytest.skip("chromium is not installed")

    @pytest.mark.skipif(True, reason="not root")
    def test_skipped_by_a_mark():
        pass

    def test_skipped_by_a_fixture(needs_pg_cron):
        pass

    @pytest.mark.xfail(reason="known", strict=True)
    def test_expected_to_fail():
        assert False
""")


@pytest.fixture
def suite(pytester, monkeypatch):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the conftest imports helpers
    return pytester


def test_in_ci_a_skipped_test_fails_the_session_and_is_named(suite, monkeypatch):
    monkeypatch.setenv("CI", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    result.stdout.fnmatch_lines([
        "*FAILED: 3 tests were skipped in CI*",
        "SKIPPED IN CI test_suite.py::test_skipped_in_the_test: chromium is not installed",
        "SKIPPED IN CI test_suite.py::test_skipped_by_a_mark: not root",
        "SKIPPED IN CI test_suite.py::test_skipped_by_a_fixture: pg_cron is not installed",
    ])
    assert "test_expected_to_fail" not in "\n".join(
        line for line in result.outlines if line.startswith("SKIPPED IN CI"))


def test_in_ci_a_session_without_skips_passes(suite, monkeypatch):
    monkeypatch.setenv("CI", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-k", "passes or expected")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "SKIPPED IN CI" not in result.stdout.str()


def test_outside_ci_a_skip_is_only_a_skip(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert "SKIPPED IN CI" not in result.stdout.str()


def test_ci_run_sets_ci_before_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for block in re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
                for line in block.splitlines() if line.strip()]
    test_command = next(c for c in commands if "pytest" in c)
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    assert code[-1] == test_command  # the README's command, last
    exports = [i for i, line in enumerate(code) if re.fullmatch(r"export CI=\S+", line)]
    assert exports and exports[-1] < len(code) - 1, "CI must be exported before the test command"
    assert not any(re.match(r"(unset|export) CI\b(?!=)", line) for line in code), "nothing may unset it"
