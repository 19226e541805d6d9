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


def test_readme_and_safety_name_everything_the_analyst_is_granted():
    """What sql/grants.sql gives [roles] analyst (SELECT on views and runs, EXECUTE on
    functions) is what README's [roles] comment and docs/safety.md's least-privilege row say."""
    from adhoc_gc.render import render_grants

    grants = render_grants(parse_mapping({"roles": {"analyst": "the_analyst"}}, source="test"))
    (selectable,) = re.findall(r'^GRANT SELECT ON (.*) TO "the_analyst";$', grants, flags=re.M)
    granted = re.findall(r'"adhoc_gc"\."([^"]+)"', selectable)
    granted += re.findall(r'^GRANT EXECUTE ON FUNCTION "adhoc_gc"\.(\w+)\(.*\) TO "the_analyst";$', grants, flags=re.M)
    assert {"candidates", "eligibility", "runs", "blocked_summary", "explain_customer"} <= set(granted), granted

    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# analyst = "))
    comment = lines[start]
    for line in lines[start + 1:]:
        if not re.match(r"^#\s+# ", line):
            break
        comment += " " + line
    (safety_row,) = [line for line in (ROOT / "docs" / "safety.md").read_text().splitlines()
                     if line.startswith("| ") and "Least privilege" in line]
    for name in granted:
        assert re.search(rf"\b{name}\b", comment), f"README's [roles] analyst comment leaves out {name}: {comment}"
        assert f"`{name}`" in safety_row, f"docs/safety.md's least-privilege row leaves out {name}"
