"""The composing stack (``stacks/imagegen_stack.py``): what its parts are granted taken together, the
outputs a client needs, and the web page pointed at the API."""

from __future__ import annotations

from aws_cdk.assertions import Template

from stacks.admission import QUEUE_ACTIONS, SLOT_ACTIONS, WAKE_ACTIONS, WAKE_RESOURCE
from tests.infra.stack_template import (
    as_list,
    granted,
    images_bucket_id,
    index_table_id,
    join_text,
    role_of,
    state_machine_id,
    statements_of_role,
)
from tests.infra.synthesis import Synthesized


def test_no_bedrock_s3_or_states_action_is_granted_on_every_resource(
    synthesized: Synthesized, variant: Synthesized
) -> None:
    for synth in (synthesized, variant):
        policies = [p["Properties"]["PolicyDocument"] for p in synth.resources("AWS::IAM::Policy").values()]
        for role in synth.resources("AWS::IAM::Role").values():
            policies += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
        for document in policies:
            for statement in document["Statement"]:
                actions = as_list(statement["Action"])
                if set(actions) <= set(WAKE_ACTIONS):
                    # no resource type: '*' is the one resource IAM takes (stacks/admission.py)
                    assert statement["Resource"] == WAKE_RESOURCE == "*", statement
                    continue
                if any(a.startswith(("bedrock:", "s3:", "states:")) for a in actions):
                    assert "*" not in as_list(statement["Resource"]), statement
                    assert not [a for a in actions if a.endswith(":*")], statement


def test_each_function_gets_only_what_its_step_does(synthesized: Synthesized) -> None:
    bucket = f"<{images_bucket_id(synthesized)}.Arn>"
    own_logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    xray = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}

    def actions_of(name: str) -> dict[str, set[str]]:
        return {
            a: r
            for a, r in granted(statements_of_role(synthesized, role_of(synthesized, name))).items()
            if a not in own_logs | xray
        }

    # The image index's writes and queries, and the spend ledger's items: tests/infra/test_index.py.
    index = f"<{index_table_id(synthesized)}.Arn>"
    assert actions_of("validate_request") == {
        "dynamodb:GetItem": {index},  # the spend ledger (SPEND#* only)
        "dynamodb:UpdateItem": {index},  # the job's item; the spend ledger
        "s3:GetObject": {f"{bucket}/*.png"},  # the stored images an operation names (issue 16)
    }
    generate = actions_of("generate_image")
    webhook_queue = synthesized.stack.resolve(synthesized.stack.webhooks.queue.node.default_child.logical_id)  # type: ignore[union-attr]
    # a cache hit's CopyObject source; the stored images an operation reads (issue 16)
    assert generate.pop("s3:GetObject") == {f"{bucket}/*.png"}
    # the images, and each image's webhook delivery record (claimed as it is stored; given back)
    assert generate.pop("s3:PutObject") == {f"{bucket}/*.png", f"{bucket}/webhooks/*"}
    assert generate.pop("s3:DeleteObject") == {f"{bucket}/webhooks/*"}
    # the queue's own grant (grant_send_messages): SendMessage and the two reads that come with it
    queued = {a: generate.pop(a) for a in [a for a in generate if a.startswith("sqs:")]}
    assert set(queued) == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert all(resources == {f"<{webhook_queue}.Arn>"} for resources in queued.values())
    assert generate.pop("s3:ListBucket") == {bucket}  # under cancellations/ only (a condition)
    # A Stability model's first call subscribes the account through Marketplace (tests/infra/test_model_access.py).
    assert (
        generate.pop("aws-marketplace:Subscribe")
        == generate.pop("aws-marketplace:ViewSubscriptions")
        == {"*"}
    )
    # its slot handed to the oldest waiting branch (or given back) as soon as the model has answered
    # (issue 15): the slots and the waiters tables, and waking that branch
    # (tests/infra/test_admission_construct.py checks the tables, the actions and the wake policy)
    admission = synthesized.stack.admission
    slots_arn, waiters_arn = (
        f"<{synthesized.stack.resolve(t.node.default_child.logical_id)}.Arn>"  # type: ignore[union-attr]
        for t in (admission.table, admission.waiters)
    )
    for action in SLOT_ACTIONS:
        assert slots_arn in generate[action]
    for action in QUEUE_ACTIONS:
        assert waiters_arn in generate[action]
    assert generate.pop("dynamodb:UpdateItem") == {slots_arn, waiters_arn}
    assert generate.pop("dynamodb:GetItem") == {slots_arn, waiters_arn}
    assert generate.pop("dynamodb:DeleteItem") == {waiters_arn}
    assert generate.pop("dynamodb:PutItem") == {index, waiters_arn}  # its index item; a ticket put back
    assert generate.pop("dynamodb:Query") == {f"{index}/index/*", waiters_arn}
    for action in WAKE_ACTIONS:
        assert generate.pop(action) == {"*"}
    assert set(generate) == {"bedrock:InvokeModel"}
    (links_secret,) = [
        k
        for k, v in synthesized.resources("AWS::SecretsManager::Secret").items()
        if "links" in v["Properties"]["Description"]
    ]
    assert actions_of("build_manifest") == {
        "s3:GetObject": {f"{bucket}/*.png"},
        "s3:PutObject": {f"{bucket}/*/manifest.json"},
        "s3:ListBucket": {bucket},
        "dynamodb:UpdateItem": {index},  # the job's final status; the spend ledger's settle
        "dynamodb:GetItem": {index},  # the spend ledger (SPEND#* only)
        # the stored manifest's lasting links (tests/infra/test_links_construct.py)
        "secretsmanager:GetSecretValue": {f"<{links_secret}>"},
        "secretsmanager:DescribeSecret": {f"<{links_secret}>"},
    }
    (waiters,) = [
        k
        for k, v in synthesized.resources("AWS::DynamoDB::GlobalTable").items()
        if [key["AttributeName"] for key in v["Properties"]["KeySchema"]] == ["model", "place"]
    ]
    standard = state_machine_id(synthesized, "STANDARD")
    executions = {f"arn:aws:states:us-west-2:123456789012:execution:<{standard}.Name>:*"}
    assert actions_of("http_api") == {
        "states:StartExecution": {f"<{standard}>"},
        "states:DescribeExecution": executions,
        "states:GetExecutionHistory": executions,
        # webhooks/*: each webhook delivery's record (tests/infra/test_webhooks_construct.py)
        "s3:GetObject": {f"{bucket}/*.png", f"{bucket}/*/manifest.json", f"{bucket}/webhooks/*"},
        "s3:PutObject": {f"{bucket}/cancellations/*"},
        "s3:ListBucket": {bucket},  # under cancellations/ only (a condition)
        # it mints lasting links (tests/infra/test_links_construct.py)
        "secretsmanager:GetSecretValue": {f"<{links_secret}>"},
        "secretsmanager:DescribeSecret": {f"<{links_secret}>"},
        "dynamodb:Query": {f"{index}/index/*"},  # GET /jobs, GET /images/search
        # the spend ledger (SPEND#* only); the admission queue's length (tests/infra/test_queue_reading.py)
        "dynamodb:GetItem": {index, f"<{waiters}.Arn>"},
        "dynamodb:UpdateItem": {index},  # the ledger; a job's item as it starts, a listed job settled
    }


def test_outputs_name_what_a_client_needs(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    assert {
        "ApiUrl",
        "ApiKeyId",
        "ImagesBucketName",
        "JobsStateMachineArn",
        "EventBusName",
        "WebUrl",
    } <= set(outputs)
    assert join_text(outputs["ApiUrl"]["Value"]).endswith("/v1/")


def test_web_page_is_pointed_at_the_api(synthesized: Synthesized) -> None:
    template: Template = synthesized.template
    template.resource_count_is("AWS::CloudFront::Distribution", 1)
    policy = next(iter(synthesized.resources("AWS::CloudFront::ResponseHeadersPolicy").values()))
    csp = join_text(
        policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"][
            "ContentSecurityPolicy"
        ]
    )
    api = next(iter(synthesized.resources("AWS::ApiGateway::RestApi")))
    assert f"connect-src 'self' https://<{api}>.execute-api.us-west-2.<AWS::URLSuffix>/v1/" in csp


def test_the_usage_plan_is_an_output_for_imagegen_keys(synthesized: Synthesized) -> None:
    """``imagegen keys`` finds the plan its keys go in from the stack's outputs."""
    (plan,) = synthesized.resources("AWS::ApiGateway::UsagePlan")
    assert synthesized.template_json["Outputs"]["UsagePlanId"]["Value"] == {"Ref": plan}
