"""Finding resources in the synthesized stack's template by their properties, never by hashed logical
ids: a function by its handler, its role and what the role is granted, the images bucket, the state
machines, an API method by its path; and a template string with its references written as ``<...>``."""

from __future__ import annotations

import json
from typing import Any

from image_pipeline.core.index_keys import GSIS

from stacks.nag import flatten_cfn_reference
from stacks.workflow import HANDLERS
from tests.infra.synthesis import Synthesized

#: The handler of each of our functions, by name: the three steps of the workflow and the HTTP API.
OUR_HANDLERS = {**HANDLERS, "http_api": "image_pipeline.handlers.http_api.handler"}


def logical_id_where(synth: Synthesized, resource_type: str, **properties: Any) -> str:
    """The logical id of the one resource of a type whose properties include ``properties``."""
    found = [
        k
        for k, v in synth.resources(resource_type).items()
        if all(v["Properties"].get(p) == value for p, value in properties.items())
    ]
    assert len(found) == 1, f"{resource_type} {properties}: {found}"
    return found[0]


def function_id(synth: Synthesized, name: str) -> str:
    return logical_id_where(synth, "AWS::Lambda::Function", Handler=OUR_HANDLERS[name])


def role_of(synth: Synthesized, name: str) -> str:
    fn = synth.template_json["Resources"][function_id(synth, name)]
    return fn["Properties"]["Role"]["Fn::GetAtt"][0]


def statements_of_role(synth: Synthesized, role: str) -> list[dict[str, Any]]:
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    for inline in synth.template_json["Resources"][role]["Properties"].get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """action -> flattened resources, over Allow statements."""
    out: dict[str, set[str]] = {}
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        for action in as_list(s["Action"]):
            out.setdefault(action, set()).update(flatten_cfn_reference(r) for r in as_list(s["Resource"]))
    return out


def images_bucket_id(synth: Synthesized) -> str:
    return next(
        k
        for k, v in synth.resources("AWS::S3::Bucket").items()
        if any(
            r.get("Id") == "expire-generated-images"
            for r in v["Properties"]["LifecycleConfiguration"]["Rules"]
        )
    )


def method(synth: Synthesized, http_method: str, path: str) -> dict[str, Any]:
    """The AWS::ApiGateway::Method for ``http_method`` on a resource path like ``/jobs/{id}``."""
    resources = synth.resources("AWS::ApiGateway::Resource")

    def path_of(ref: dict[str, Any]) -> str:
        if "Fn::GetAtt" in ref:  # the root resource
            return ""
        props = resources[ref["Ref"]]["Properties"]
        return f"{path_of(props['ParentId'])}/{props['PathPart']}"

    found = [
        m["Properties"]
        for m in synth.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == http_method and path_of(m["Properties"]["ResourceId"]) == path
    ]
    assert len(found) == 1, (http_method, path, len(found))
    return found[0]


def join_text(value: Any) -> str:
    """A template string that may hold references (Fn::Join), each reference written as <...>."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        delimiter, items = value["Fn::Join"]
        return delimiter.join(join_text(i) for i in items)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    return json.dumps(value)


def workflow_machines(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """The per-request workflow's state machine (not the batch's), by logical id."""
    batch = synthesized.stack.resolve(synthesized.stack.batch.state_machine.node.default_child.logical_id)  # type: ignore[union-attr]
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    assert batch in machines
    return {k: v for k, v in machines.items() if k != batch}


def state_machine_id(synth: Synthesized, kind: str) -> str:
    return next(
        k
        for k, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if m["Properties"]["StateMachineType"] == kind
    )


def openai_api_ref(synth: Synthesized) -> dict[str, str] | None:
    """``{"Ref": <id>}`` of the OpenAI-compatible REST API (key source AUTHORIZER), if the stack has one."""
    ids = [
        k
        for k, v in synth.resources("AWS::ApiGateway::RestApi").items()
        if v["Properties"].get("ApiKeySourceType") == "AUTHORIZER"
    ]
    return {"Ref": ids[0]} if ids else None


def main_api_resources(synth: Synthesized, resource_type: str) -> dict[str, dict[str, Any]]:
    """The resources of a type that belong to the main API (not to the OpenAI-compatible one), by their
    ``RestApiId``; a Lambda permission by the API its ``SourceArn`` names."""
    other = openai_api_ref(synth)
    if other is None:
        return synth.resources(resource_type)
    kept = {}
    for logical_id, resource in synth.resources(resource_type).items():
        props = resource["Properties"]
        if props.get("RestApiId") == other or other["Ref"] in json.dumps(props.get("SourceArn", "")):
            continue
        kept[logical_id] = resource
    return kept


def index_table_id(synth: Synthesized) -> str:
    """The image index's table (``stacks/index.py``): the table with the index's GSIs."""
    found = [
        k
        for k, v in synth.resources("AWS::DynamoDB::GlobalTable").items()
        if {g["IndexName"] for g in v["Properties"].get("GlobalSecondaryIndexes", [])} == set(GSIS)
    ]
    assert len(found) == 1, found
    return found[0]
