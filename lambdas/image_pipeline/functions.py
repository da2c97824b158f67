"""The app's Lambda functions as plain data: each one's name, handler and ASL placeholder.

One table for the two places that wire functions up: the CDK app (``stacks/``: the handler of each
function it deploys, and the ``${...}`` placeholders it fills with their ARNs) and the offline engine
(``imagegen.runtime``: the function names its router answers for, and the same placeholders filled
with their offline ARNs). No imports, so the CDK app reads it without loading a handler or Powertools.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LambdaFunction:
    """One Lambda function of the app."""

    #: Its function name offline (deployed, CloudFormation names it).
    name: str
    #: Dotted path of its handler in this package.
    handler: str
    #: The ASL placeholder its ARN fills in its state machine's definition; None: no Task calls it.
    placeholder: str | None = None

    @property
    def module(self) -> str:
        """The handler's module name, such as ``generate_image``."""
        return self.handler.rsplit(".", 2)[-2]


VALIDATE_REQUEST = LambdaFunction(
    "imagegen-validate-request",
    "image_pipeline.handlers.validate_request.handler",
    "ValidateRequestFunctionArn",
)
GENERATE_IMAGE = LambdaFunction(
    "imagegen-generate-image", "image_pipeline.handlers.generate_image.handler", "GenerateImageFunctionArn"
)
#: Admission control: a Map branch takes a slot of its model before the call and gives it back after.
ADMISSION = LambdaFunction(
    "imagegen-admission", "image_pipeline.handlers.admission.handler", "AdmissionFunctionArn"
)
BUILD_MANIFEST = LambdaFunction(
    "imagegen-build-manifest", "image_pipeline.handlers.build_manifest.handler", "BuildManifestFunctionArn"
)
PREPARE_BATCH = LambdaFunction(
    "imagegen-prepare-batch", "image_pipeline.handlers.prepare_batch.handler", "PrepareBatchFunctionArn"
)
BUILD_BATCH_MANIFEST = LambdaFunction(
    "imagegen-build-batch-manifest",
    "image_pipeline.handlers.build_batch_manifest.handler",
    "BuildBatchManifestFunctionArn",
)
HTTP_API = LambdaFunction("imagegen-http-api", "image_pipeline.handlers.http_api.handler")
#: The OpenAI-compatible API's Lambda authorizer: the SDK's Bearer key as the API key.
OPENAI_AUTHORIZER = LambdaFunction(
    "imagegen-openai-authorizer", "image_pipeline.handlers.openai_authorizer.handler"
)

#: ``GET /links/{token}``: a lasting link followed (no API key: the token is signed).
FOLLOW_LINK = LambdaFunction("imagegen-follow-link", "image_pipeline.handlers.follow_link.handler")

#: Webhook deliveries: an SQS event source over the delivery queue (``core/webhooks.py``).
DELIVER_WEBHOOK = LambdaFunction(
    "imagegen-deliver-webhook", "image_pipeline.handlers.deliver_webhook.handler"
)

#: The Task functions of ``statemachine/generate_images.asl.json``.
WORKFLOW_FUNCTIONS = (VALIDATE_REQUEST, ADMISSION, GENERATE_IMAGE, BUILD_MANIFEST)
#: The Task functions of ``statemachine/batch_generate.asl.json``.
BATCH_FUNCTIONS = (PREPARE_BATCH, BUILD_BATCH_MANIFEST)
#: Every function of the app.
FUNCTIONS = (*WORKFLOW_FUNCTIONS, *BATCH_FUNCTIONS, HTTP_API, OPENAI_AUTHORIZER, FOLLOW_LINK, DELIVER_WEBHOOK)
