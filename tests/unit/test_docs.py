"""The README's promises, checked against the code, so docs and defaults cannot drift."""

import re
from pathlib import Path

from adhoc_gc.mapping import parse_mapping, parse_mapping_text

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_configuration_reference_is_the_built_in_defaults():
    (reference,) = _blocks("toml")
    documented = parse_mapping_text(reference, source="README")
    defaults = parse_mapping({}, source="built-in defaults")
    assert documented.fingerprint() == defaults.fingerprint()
    assert documented.schema == defaults.schema


def test_ci_runs_exactly_the_readme_test_command():
    commands = [line.strip() for block in _blocks("sh") for line in block.splitlines() if line.strip()]
    test_command = next(c for c in commands if "pytest" in c)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_names_every_cli_command():
    from adhoc_gc.cli import COMMANDS

    for name in COMMANDS:
        assert f"adhoc-gc {name}" in README, name
