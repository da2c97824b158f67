"""cfn-lint on the synthesized templates: no errors (the CDK's own W3005 warnings are allowed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from tests.infra.synthesis import Synthesized

#: Findings the CDK's templates always have: W3005 (a DependsOn also implied by a GetAtt).
ALLOWED = {"W3005"}


def cfn_lint(template: Path) -> list[tuple[str, str, str]]:
    """(rule id, location, message) of every cfn-lint finding, checked for the deployment Regions."""
    matches = lint_file(template, config=ManualArgs(regions=["us-east-1", "us-west-2", "eu-west-1"]))
    return [(m.rule.id, f"{m.filename}:{m.linenumber}", m.message) for m in matches]


@pytest.mark.parametrize("which", ["synthesized", "variant"])
def test_cfn_lint_reports_no_errors(which: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    findings = cfn_lint(synth.template_path)
    assert [f for f in findings if f[0].startswith("E")] == []
    assert [f for f in findings if f[0] not in ALLOWED] == []
