"""The CDK app synthesized once per session, offline (``tests/infra/synthesis.py``): the defaults of
``cdk.json`` (``synthesized``), a variant of every option (``variant``), and sign-in with Cognito
(``cognito``: ``imagegen:apiAuth=cognito``)."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from tests.infra.synthesis import VARIANT, Synthesized, synthesize


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out.variant"), VARIANT, env=None)


@pytest.fixture(scope="session")
def cognito(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out.cognito"), {"apiAuth": "cognito"})


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template
