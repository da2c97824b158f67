"""cdk-nag's AwsSolutions rules, and every finding this app accepts, each with its reason.

cdk-nag 3 runs as a CDK validation plugin (``Validations.of(...).add_plugins``): synthesis fails on any
error that is not acknowledged, and ``cdk.out/validation-report.json`` lists the findings. An
acknowledgment (``Validations.of(construct).acknowledge``) names one finding on one construct and holds
for the resources below it. Wildcard findings name their resource as cdk-nag prints it
(``AwsSolutions-IAM5[Resource::<Bucket.Arn>/*.png]``): :func:`iam5` derives that text from the very
value the construct granted, so a new wildcard anywhere is reported, never silently accepted.

This module does not import the stack: it takes any construct that has the stack's parts
(:class:`ComposedStack`), so the stack imports it and not the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from stacks.admission import AdmissionControl
from stacks.api import ImageApi
from stacks.batch import REQUEST_MANIFESTS, RESULT_FILES, UPLOADED_FILES, BatchConstruct
from stacks.events import WorkflowEvents
from stacks.index import ImageIndexTable
from stacks.links import LastingLinks
from stacks.openai_api import OpenAiImagesApi
from stacks.sign_in import UserSignIn
from stacks.storage import ImageStorage
from stacks.web import WebConstruct
from stacks.webhooks import SignedWebhooks
from stacks.workflow import CANCELLATION_KEYS, IMAGE_KEYS, MANIFEST_KEYS, ImageWorkflow

PACK = "AwsSolutions"
#: The singleton Lambda that aws-cdk-lib's BucketDeployment adds to the stack (web page upload).
BUCKET_DEPLOYMENT_HANDLER = "Custom::CDKBucketDeployment"
#: The singleton Lambda that aws-cdk-lib adds to configure bucket notifications (EventBridge on).
BUCKET_NOTIFICATIONS_HANDLER = "BucketNotificationsHandler"


class ComposedStack(IConstruct, Protocol):
    """What the acknowledgements need of a stack: the constructs it composed (``ImagegenStack`` is one)."""

    storage: ImageStorage
    events: WorkflowEvents
    workflow: ImageWorkflow
    batch: BatchConstruct
    api: ImageApi
    links: LastingLinks
    openai_api: OpenAiImagesApi | None
    web: WebConstruct | None
    webhooks: SignedWebhooks
    index: ImageIndexTable
    sign_in: UserSignIn | None
    admission: AdmissionControl


def check_with_cdk_nag(stack: ComposedStack) -> None:
    """Run the AwsSolutions pack at synthesis and acknowledge the accepted findings."""
    Validations.of(stack).add_plugins(AwsSolutionsChecks())
    acknowledge_findings(stack)


def acknowledge(scope: IConstruct, reason: str, *rules: str) -> None:
    """Acknowledge ``rules`` (``"S1"`` or a full finding id) on ``scope`` and below, for ``reason``."""
    Validations.of(scope).acknowledge(
        *(
            Acknowledgment(id=rule if rule.startswith(PACK) else f"{PACK}-{rule}", reason=reason)
            for rule in rules
        )
    )


# -- how cdk-nag names a wildcard finding ----------------------------------------------------------


def flatten_cfn_reference(node: Any) -> str:
    """cdk-nag's ``flattenCfnReference``: a resolved CloudFormation value as one string."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_cfn_reference(i) for i in items)
        if "Fn::Sub" in node:
            return flatten_cfn_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_cfn_reference(resource)}.{flatten_cfn_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_cfn_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_cfn_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def iam5(scope: IConstruct, resource: str) -> str:
    """The IAM5 finding id of a wildcard ``resource`` (an ARN string or token) granted in ``scope``."""
    return f"IAM5[Resource::{flatten_cfn_reference(Stack.of(scope).resolve(resource))}]"


def wildcard_findings(policy: iam.Policy) -> list[str]:
    """Every IAM5 finding of a policy (actions and resources with ``*``), as cdk-nag reports them."""
    document = Stack.of(policy).resolve(policy.document)
    findings: dict[str, None] = {}
    for statement in document.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        for action in _as_list(statement.get("Action")):
            if "*" in action:
                findings[f"IAM5[Action::{action}]"] = None
        for resource in _as_list(statement.get("Resource")):
            flat = flatten_cfn_reference(resource)
            if "*" in flat:
                findings[f"IAM5[Resource::{flat}]"] = None
    return list(findings)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- the accepted findings --------------------------------------------------------------------------

XRAY = (
    "X-Ray's PutTraceSegments/PutTelemetryRecords (and the vended-logs delivery actions of Step Functions "
    "logging) support no resource-level permissions: IAM requires Resource '*' for them."
)
LATEST_RUNTIME = (
    "Python 3.13 on arm64 is the runtime the handlers are tested on and the one the AWS-managed "
    "Powertools v3 layer is pinned for (AWSLambdaPowertoolsPythonV3-python313-arm64); runtime and "
    "layer move together, by a code change."
)
MARKETPLACE_FIRST_USE = (
    "A third-party model's first call makes Bedrock subscribe the account through AWS Marketplace with "
    "the caller's aws-marketplace:Subscribe and aws-marketplace:ViewSubscriptions, which take no resource "
    "but '*' (https://docs.aws.amazon.com/bedrock/latest/userguide/model-access.html); the Stability "
    "product ids that aws-marketplace:ProductId could name are not documented. Granted only when an "
    "allowed model is a Marketplace model, only to the function that invokes models, and (by default) "
    "only for calls Bedrock makes (aws:CalledViaLast); imagegen:marketplaceFirstUse=off removes it."
)


def acknowledge_findings(stack: ComposedStack) -> None:
    """Every accepted finding of the stack, with its reason."""
    _workflow(stack)
    _batch(stack)
    _api(stack)
    _links(stack)
    _openai_api(stack)
    _webhooks(stack)
    _index(stack)
    _admission(stack)
    _sign_in(stack)
    acknowledge(
        stack.events.dead_letters,
        "This queue is the dead-letter queue of the EventBridge rule's target; a DLQ of a DLQ would "
        "only move the same undelivered events again.",
        "SQS3",
    )
    if stack.web is not None:
        _web(stack)


def _workflow(stack: ComposedStack) -> None:
    workflow = stack.workflow
    bucket = stack.storage.images_bucket

    for step in workflow.functions:
        acknowledge(step.function, LATEST_RUNTIME, "L1")
        acknowledge(step.role, XRAY, "IAM5[Resource::*]")
    if workflow.marketplace_policy is not None:
        acknowledge(workflow.marketplace_policy, MARKETPLACE_FIRST_USE, "IAM5[Resource::*]")
    acknowledge(
        workflow.generate_image.role,
        "Image keys are <output_folder>/<request id>/<prefix>-<index>-<seed>.png, chosen per request: the "
        "grant is s3:PutObject on *.png keys of this one bucket, nothing else.",
        iam5(bucket, bucket.arn_for_objects(IMAGE_KEYS)),
    )
    acknowledge(
        workflow.validate_request.role,
        "An operation on a stored image names it by key (<namespace>/.../*.png, any of the caller's "
        "images): the first step reads it (its size; a mask's pixels) before anything runs, and only "
        "after checking that the key is under the caller's namespace: GetObject on *.png keys of this "
        "one bucket, nothing else.",
        iam5(bucket, bucket.arn_for_objects(IMAGE_KEYS)),
    )
    acknowledge(
        workflow.build_manifest.role,
        "The manifest step checks (HEAD) and presigns the request's images, whose keys are chosen per "
        "request (*.png), and writes <folder>/<request id>/manifest.json: GetObject on *.png and "
        "PutObject on */manifest.json keys of this one bucket.",
        iam5(bucket, bucket.arn_for_objects(IMAGE_KEYS)),
        iam5(bucket, bucket.arn_for_objects(MANIFEST_KEYS)),
    )
    for machine in (workflow.standard,):
        acknowledge(machine.role, XRAY, "IAM5[Resource::*]")
        acknowledge(
            machine.role,
            "lambda:InvokeFunction on the function and its versions/aliases (<arn>:*) is the CDK's "
            "grantInvoke; the state machine calls only the three functions of its Task states.",
            *(iam5(machine, f"{step.function.function_arn}:*") for step in workflow.functions),
        )


def _batch(stack: ComposedStack) -> None:
    batch = stack.batch
    bucket = stack.storage.images_bucket
    results = iam5(bucket, bucket.arn_for_objects(RESULT_FILES))
    request_executions = iam5(batch, batch.request_executions_arn)

    for step in batch.functions:
        acknowledge(step.function, LATEST_RUNTIME, "L1")
        acknowledge(step.role, XRAY, "IAM5[Resource::*]")
    acknowledge(
        batch.prepare.role,
        "The batch file is any batches/*.jsonl key a user uploads (GetObject on batches/*), and the batch's "
        "items go under batch-results/<batch id>/ (PutObject on batch-results/*), in this one bucket.",
        iam5(bucket, bucket.arn_for_objects(UPLOADED_FILES)),
        results,
    )
    acknowledge(
        batch.build_manifest.role,
        "The batch manifest step describes the executions the batch started (DescribeExecution on the "
        "jobs workflow's executions, <name>:*), reads the Map's results and each request's manifest "
        "(<folder>/<request id>/manifest.json, chosen per line) and writes under batch-results/*.",
        request_executions,
        results,
        iam5(bucket, bucket.arn_for_objects(REQUEST_MANIFESTS)),
    )
    machine = batch.state_machine
    acknowledge(machine.role, XRAY, "IAM5[Resource::*]")
    acknowledge(
        machine.role,
        "The Distributed Map reads its items and writes its ResultWriter files under batch-results/*, "
        "describes and stops the jobs workflow's executions it started (<name>:*), and invokes its two "
        "functions (<arn>:*, the CDK's grantInvoke).",
        results,
        request_executions,
        *(iam5(machine, f"{step.function.function_arn}:*") for step in batch.functions),
    )
    acknowledge(
        batch.map_run_policy,
        "A Distributed Map runs its iterations as child executions of its own state machine: the grants "
        "are on that state machine's executions and map runs only, as the CDK's DistributedMap writes them.",
        *wildcard_findings(batch.map_run_policy),
    )
    for handler in _children_named(stack, BUCKET_NOTIFICATIONS_HANDLER):
        acknowledge(
            handler,
            "aws-cdk-lib's bucket-notifications handler (turns on the images bucket's EventBridge "
            "notifications at deploy time): its role and managed policy are the CDK's, not written here.",
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        )


def _api(stack: ComposedStack) -> None:
    api = stack.api
    bucket = stack.storage.images_bucket

    acknowledge(api.http_api.function, LATEST_RUNTIME, "L1")
    acknowledge(api.http_api.role, XRAY, "IAM5[Resource::*]")
    acknowledge(
        api.http_api.role,
        "GET /jobs/{id} (and POST /jobs, for a repeated idempotency key; the synchronous routes, which "
        "wait for their job) describes one execution of the jobs workflow, named by the client: the "
        "grant is DescribeExecution/GetExecutionHistory on that workflow's executions (<name>:*) only; it "
        "also presigns image URLs (GetObject on *.png keys), reads the manifest of a failed job to retry "
        "it (GetObject on */manifest.json keys) and writes a job's cancellation marker (PutObject on "
        "cancellations/* keys), all of the images bucket. Starting and listing executions is granted on "
        "the jobs state machine, no wildcard.",
        iam5(api, api.job_executions_arn),
        iam5(bucket, bucket.arn_for_objects(IMAGE_KEYS)),
        iam5(bucket, bucket.arn_for_objects(MANIFEST_KEYS)),
        iam5(bucket, bucket.arn_for_objects(CANCELLATION_KEYS)),
    )
    cloud_watch_role = api.rest_api.node.try_find_child("CloudWatchRole")
    if cloud_watch_role is not None:
        acknowledge(
            cloud_watch_role,
            "API Gateway's account-level role for access and execution logs; "
            "AmazonAPIGatewayPushToCloudWatchLogs is the policy AWS documents for it.",
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
        )
    acknowledge(
        api.rest_api.deployment_stage,
        "No WAF web ACL by default (it has a monthly cost): clients need an API key or SigV4, the usage "
        "plan and stage throttle every client, and the function validates every request before anything "
        "starts. Associate a web ACL with the stage for an internet-facing deployment.",
        "APIG3",
    )
    acknowledge(
        api.rest_api,
        "No API Gateway request validator: the HTTP API function validates every request fully (fields, "
        "the model's limits) before any execution starts, with the same message as the console, events "
        "and the local server; API Gateway's validator message cannot be put into a JSON error body "
        "safely (gateway responses do no escaping). See docs/decisions.md.",
        "APIG2",
    )
    reason_cognito = (
        "Clients are machines and this page's users, authenticated with an API key (usage plan) or with "
        "IAM (SigV4, imagegen:apiAuth=iam); there is no user pool to authorize against."
    )
    reason_api_key = (
        "Methods require an API key bound to a usage plan (throttle + daily quota), not an authorizer; "
        "deploy with imagegen:apiAuth=iam for SigV4 authorization."
    )
    reason_preflight = "CORS preflight (OPTIONS) requests carry no credentials by design (Fetch standard)."
    for method in api.rest_api.methods:
        if method is stack.links.method:
            continue  # its own reasons: _links
        if method.http_method == "OPTIONS":
            acknowledge(method, reason_preflight, "APIG4", "COG4")
            continue
        if api.auth == "cognito":
            continue  # the user pool's authorizer: neither finding applies
        acknowledge(method, reason_cognito, "COG4")
        if api.auth == "apiKey":
            acknowledge(method, reason_api_key, "APIG4")


def _links(stack: ComposedStack) -> None:
    links = stack.links
    bucket = stack.storage.images_bucket
    acknowledge(links.follower.function, LATEST_RUNTIME, "L1")
    acknowledge(links.follower.role, XRAY, "IAM5[Resource::*]")
    acknowledge(
        links.follower.role,
        "A lasting link may name any image of any caller (each link is signed for one key, checked by the "
        "function): the follower reads GetObject on the images bucket's *.png keys only, to check the "
        "image is still stored and presign its URL, as the HTTP API function does.",
        iam5(bucket, links.image_objects_arn),
    )
    acknowledge(
        links.method,
        "GET /links/{token} is authorized by the token itself, an HMAC-SHA256 signature with the "
        "deployment's secret over one image's key, its caller's namespace and an expiry, checked by the "
        "function, as a presigned URL's signature is checked by S3: a browser's <img src> or a link "
        "shared with someone sends no API key or SigV4. It only redirects to one image; it starts and "
        "reads nothing else, and the stage throttle applies. See docs/decisions.md.",
        "APIG4",
        "COG4",
    )
    acknowledge(
        links.secret,
        "The links' HMAC key is not rotated automatically: rotating it revokes every link issued, which "
        "would end links before their images, the very thing they are for. Rotate it by hand to revoke "
        "all links (docs/operations.md).",
        "SMG4",
    )


def _webhooks(stack: ComposedStack) -> None:
    hooks = stack.webhooks
    bucket = stack.storage.images_bucket
    acknowledge(hooks.deliverer.function, LATEST_RUNTIME, "L1")
    acknowledge(hooks.deliverer.role, XRAY, "IAM5[Resource::*]")
    acknowledge(
        hooks.deliverer.role,
        "The delivery function sends the job document GET /jobs/{id} gives, with presigned links to its "
        "images: GetObject on the images bucket's *.png keys only, as the HTTP API function has.",
        iam5(bucket, hooks.image_objects_arn),
    )
    acknowledge(
        hooks.deliverer.role,
        "Each delivery's attempts are recorded as one object under webhooks/<execution name>/, which "
        "the function writes and reads, and GET /jobs/{id} lists: that prefix only.",
        iam5(bucket, hooks.records_arn),
    )
    acknowledge(
        hooks.deliverer.role,
        "The function reads the ended execution it delivers (its input names the webhook, its output is "
        "the manifest): DescribeExecution on the executions of the jobs workflow only, whose names are "
        "not known in advance.",
        iam5(stack, hooks.job_executions_arn),
    )
    acknowledge(
        stack.workflow.generate_image.role,
        "The image function queues its image's webhook delivery as it stores the image, claiming the "
        "delivery's record under webhooks/<execution name>/ first (a conditional PutObject, and "
        "DeleteObject to give the claim back when the message was not sent): that prefix only.",
        iam5(bucket, hooks.records_arn),
    )
    acknowledge(
        stack.api.http_api.role,
        "GET /jobs/{id} shows each webhook delivery's attempts and last status: the HTTP API function "
        "reads the delivery records under webhooks/ (GetObject, and ListBucket for that prefix only).",
        iam5(bucket, hooks.records_arn),
    )
    acknowledge(
        hooks.secret,
        "The webhooks' signing secret is not rotated automatically: every receiver holds it to verify "
        "deliveries, and a rotation they did not make would fail every delivery after it. An operator "
        "rotates it with the receivers (docs/operations.md).",
        "SMG4",
    )
    acknowledge(
        hooks.dead_letters,
        "This is the dead-letter queue of the delivery queue and of the rule's target; a DLQ of a DLQ "
        "would only move the same undelivered messages again. An operator redrives it.",
        "SQS3",
    )


def _openai_api(stack: ComposedStack) -> None:
    openai_api = stack.openai_api
    if openai_api is None:
        return
    if openai_api.authorizer_function is not None:  # API keys (with sign-in: the user pool's authorizer)
        acknowledge(openai_api.authorizer_function.function, LATEST_RUNTIME, "L1")
        acknowledge(openai_api.authorizer_function.role, XRAY, "IAM5[Resource::*]")
    acknowledge(
        openai_api.rest_api.deployment_stage,
        "No WAF web ACL by default (it has a monthly cost): every request needs an API key of the usage "
        "plan (the Bearer key, checked by API Gateway), which throttles it, and the function validates "
        "every request before anything starts. Associate a web ACL for an internet-facing deployment.",
        "APIG3",
    )
    acknowledge(
        openai_api.rest_api,
        "No API Gateway request validator: the HTTP API function validates every request (OpenAI's fields "
        "and ours, the model's limits) and answers in OpenAI's error shape. See docs/decisions.md.",
        "APIG2",
    )
    if openai_api.authorizer_function is not None:
        acknowledge(
            openai_api.method,
            "OpenAI's SDKs authenticate with an API key sent as a Bearer token: a Lambda authorizer hands "
            "it to API Gateway, which checks it against the usage plan; there is no user pool.",
            "COG4",
        )


def _sign_in(stack: ComposedStack) -> None:
    """The user pool of imagegen:apiAuth=cognito (stacks/sign_in.py)."""
    if stack.sign_in is None:
        return
    acknowledge(
        stack.sign_in.user_pool,
        "Threat protection (AdvancedSecurityMode ENFORCED) needs the Cognito Plus feature plan, priced "
        "per monthly active user; the pool is on Essentials with MFA required (TOTP), a 12-character "
        "password policy and no self sign-up (administrators invite users). Turn on the Plus plan and "
        "threat protection for a large or public user base.",
        "COG3",
        "COG8",
    )


def _web(stack: ComposedStack) -> None:
    assert stack.web is not None
    distribution = stack.web.distribution
    acknowledge(
        distribution,
        "The default *.cloudfront.net certificate cannot set a minimum TLS version; give the web "
        "construct a custom domain and ACM certificate to enforce TLS 1.2.",
        "CFR4",
    )
    acknowledge(distribution, "The page is a static form for API users; it serves every country.", "CFR1")
    acknowledge(
        distribution,
        "The distribution serves a few static files (no origin logic, no user data); the API it calls "
        "authenticates and throttles every request.",
        "CFR2",
    )
    for handler in _children_named(stack, BUCKET_DEPLOYMENT_HANDLER):
        reason = (
            "aws-cdk-lib's BucketDeployment handler (copies web/ into the web bucket at deploy time): its "
            "role, managed policy, wildcard grants on the asset and web buckets and its runtime are the "
            "CDK's, not written here."
        )
        findings = [
            "L1",
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        ]
        for policy in _policies(handler):
            findings += wildcard_findings(policy)
        acknowledge(handler, reason, *findings)


def _children_named(scope: IConstruct, prefix: str) -> list[IConstruct]:
    return [c for c in scope.node.children if c.node.id.startswith(prefix)]


def _policies(scope: IConstruct) -> Iterable[iam.Policy]:
    return [c for c in scope.node.find_all() if isinstance(c, iam.Policy)]


def _index(stack: ComposedStack) -> None:
    """The image index's queries: every one goes through a global secondary index of the one table."""
    index = stack.index
    reason = (
        "The image index is queried through its global secondary indexes (by caller, by caller and "
        "model, by key, by cache key: stacks/index.py), whose ARNs are <table>/index/<name>: the grant is "
        "dynamodb:Query on this one table's indexes, nothing else."
    )
    for role in (stack.workflow.generate_image.role, stack.api.http_api.role):
        acknowledge(role, reason, iam5(index, index.indexes_arn))


WAKE_ANY_TASK = (
    "SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat take no resource type in the Service "
    "Authorization Reference (list_awsstepfunctions.html), so IAM requires Resource '*' for them; what "
    "limits a call is the task token, which only the waiting branch's ticket in the waiters table holds. "
    "A policy of its own, attached only to the two functions that hand a slot on (Admission, GenerateImage)."
)


def _admission(stack: ComposedStack) -> None:
    """Waking a waiting branch: the task-response actions, on '*' (``stacks/admission.py``)."""
    acknowledge(stack.admission.wake_policy, WAKE_ANY_TASK, "IAM5[Resource::*]")
