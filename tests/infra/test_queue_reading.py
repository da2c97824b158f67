"""The HTTP API function reads the length of a model's admission queue (issue 15: the synchronous
routes look before they wait): ``GetItem`` on the waiters table and nothing else of admission control,
with the tables' names and the models' calls in flight in its environment."""

from __future__ import annotations

import json

from stacks.admission import QUEUE_LENGTH_ACTIONS
from tests.infra.stack_template import function_id, granted, role_of, statements_of_role
from tests.infra.synthesis import Synthesized


def _table(synth: Synthesized, keys: list[str]) -> str:
    (table,) = [
        k
        for k, v in synth.resources("AWS::DynamoDB::GlobalTable").items()
        if [key["AttributeName"] for key in v["Properties"]["KeySchema"]] == keys
    ]
    return table


def test_the_http_api_reads_the_queues_length_and_nothing_more(synthesized: Synthesized) -> None:
    slots, waiters = _table(synthesized, ["model"]), _table(synthesized, ["model", "place"])
    rights = granted(statements_of_role(synthesized, role_of(synthesized, "http_api")))
    on_waiters = {a for a, r in rights.items() if f"<{waiters}.Arn>" in r}
    assert on_waiters == set(QUEUE_LENGTH_ACTIONS) == {"dynamodb:GetItem"}
    assert not [a for a, r in rights.items() if f"<{slots}.Arn>" in r]  # no slot taken or given
    assert "states:SendTaskSuccess" not in rights  # no branch woken
    props = synthesized.template_json["Resources"][function_id(synthesized, "http_api")]["Properties"]
    variables = props["Environment"]["Variables"]
    assert variables["ADMISSION_TABLE"] == {"Ref": slots}  # admission control is on
    assert variables["ADMISSION_WAITERS_TABLE"] == {"Ref": waiters}
    assert json.loads(variables["MODEL_CONCURRENCY"]) == {}  # cdk.json's: each model's default
