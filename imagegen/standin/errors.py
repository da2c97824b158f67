"""The errors the Bedrock stand-in answers, with Bedrock's own wording where it is known.

An error reaches the client in the AWS restJson1 form botocore parses (``x-amzn-ErrorType`` header,
HTTP status, ``{"message": ...}`` body), so boto3 raises ``client.exceptions.<code>``.

Where each message comes from (AWS documents none of them word for word; they were read in public
issue threads, as ``/tmp/aws_facts_notes.md`` §1 and §7 record):

* ``INVALID_MODEL_IDENTIFIER`` — ValidationException (400) for a model id that a Region does not
  serve, e.g. Nova Canvas called in us-west-2 (aws-samples/amazon-bedrock-workshop#340, 2025-03) or a
  model id Bedrock does not know (GoogleCloudPlatform/kubectl-ai#515, earendil-works/pi#4993, 2026).
  Older threads (2023-2024: aws-samples/Serverless-Retrieval-Augmented-Generation-RAG-on-AWS#28,
  aws-samples/bedrock-chat#91) show ResourceNotFoundException "Could not resolve the foundation model
  from the provided model identifier." for the same situation; the newer form is used.
* ``END_OF_LIFE`` — ResourceNotFoundException (404) for a model past its end-of-life date
  (aws-samples/amazon-bedrock-ai-karaoke#21, awsdocs/aws-doc-sdk-examples#6403,
  aws-samples/serverless-patterns PR #2855, accelerated-intelligent-document-processing-on-aws#708).
* ``ON_DEMAND_NOT_SUPPORTED`` — ValidationException (400) for a model that must be invoked through an
  inference profile, called by its bare model id (anthropics/anthropic-sdk-python#894 with the 400,
  terricain/aioboto3#352 and stackblitz-labs/bolt.diy#1102 with the ValidationException; the
  apostrophe in "isn\u2019t" is U+2019 (RIGHT SINGLE QUOTATION MARK) in every thread).
* ``MARKETPLACE_DENIED`` — AccessDeniedException (403) for a third-party (AWS Marketplace) model's
  first call by an identity without ``aws-marketplace:ViewSubscriptions``/``Subscribe``: the form
  quoted in ministryofjustice/modernisation-platform-environments PR #18323 (2026-08; earlier threads
  say "after 15 minutes"). AWS documents the behaviour, not the text:
  https://docs.aws.amazon.com/bedrock/latest/userguide/model-access.html
* ``malformed`` — ValidationException (400) "Malformed input request: <violations>, please reformat
  your input and try again." for a body its model's JSON Schema refuses; the violation forms are
  listed in ``imagegen.standin.body_schemas``.
"""

from __future__ import annotations

from collections.abc import Iterable

from imagegen.standin.faults import BEDROCK_ERROR_HTTP_STATUS

__all__ = [
    "END_OF_LIFE",
    "INVALID_MODEL_IDENTIFIER",
    "MARKETPLACE_DENIED",
    "MESSAGES",
    "ON_DEMAND_NOT_SUPPORTED",
    "BedrockError",
    "malformed",
]

MESSAGES: dict[str, str] = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ModelErrorException": "The model encountered an error while processing the request.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided model identifier.",
}
"""A generic message per error code (for injected faults)."""

#: A call over the model's quota (``LocalBedrockServer(quotas=...)``, ``--quota MODEL=N``): the
#: ThrottlingException text Bedrock Runtime answers (seen in issue threads, not in AWS's pages).
QUOTA_THROTTLED = "Too many requests, please wait before trying again."
INVALID_MODEL_IDENTIFIER = "The provided model identifier is invalid."
END_OF_LIFE = "This model version has reached the end of its life. Please refer to the AWS documentation for more details."
ON_DEMAND_NOT_SUPPORTED = (
    "Invocation of model ID {model_id} with on-demand throughput isn\u2019t supported. Retry your request "
    "with the ID or ARN of an inference profile that contains this model."
)
MARKETPLACE_DENIED = (
    "Model access is denied due to IAM user or service role is not authorized to perform the required AWS "
    "Marketplace actions (aws-marketplace:ViewSubscriptions, aws-marketplace:Subscribe) to enable access to "
    "this model. Refer to the Amazon Bedrock documentation for further details. Your AWS Marketplace "
    "subscription for this model cannot be completed at this time. If you recently fixed this issue, try "
    "again after 5 minutes."
)


class BedrockError(Exception):
    """An error answer: ``code`` (the ``x-amzn-ErrorType``), ``message`` and the HTTP ``status``."""

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES.get(code, code)
        self.status = BEDROCK_ERROR_HTTP_STATUS.get(code, 400)
        super().__init__(self.message)


def malformed(violations: Iterable[str]) -> BedrockError:
    """Bedrock's ValidationException for a body that fails its schema: the violations are run
    together with no separator, as Bedrock prints several (langgenius/dify#3326, quadratichq/quadratic#2718)."""
    return BedrockError(
        "ValidationException",
        f"Malformed input request: {''.join(violations)}, please reformat your input and try again.",
    )
