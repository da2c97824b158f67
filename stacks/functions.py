"""The Lambda functions' common shape: one asset, the Powertools layer, Python 3.13 on arm64.

Every function is a row of ``image_pipeline.functions`` (its handler, a dotted path into the
``image_pipeline`` package of ``lambdas/``, and its ASL placeholder). The asset is that
directory as it is (no bundling, no Docker): the runtime dependencies (pydantic v2 and Powertools) come
from the AWS-managed Powertools for AWS Lambda (Python) v3 layer, which is built with the package's
``[all]`` extras (pydantic among them), and boto3 is the runtime's own.

Each function gets its own role (nothing but its log group, X-Ray and what the construct using it
grants) and its own log group with a retention period.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from image_pipeline.functions import LambdaFunction

#: The Lambda asset: the directory that holds the ``image_pipeline`` package.
LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambdas"
#: Left out of the asset (byte code, caches, tests).
ASSET_EXCLUDES = ("**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache", "**/*.egg-info")

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
#: Powertools for AWS Lambda (Python) v3, published by AWS in every commercial Region
#: (https://docs.aws.amazon.com/powertools/python/latest/#lambda-layer).
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python313-arm64"
POWERTOOLS_LAYER_VERSION = 27
LOG_RETENTION = logs.RetentionDays.ONE_MONTH


def powertools_layer_arn(region: str, version: int = POWERTOOLS_LAYER_VERSION) -> str:
    """The ARN of the Powertools layer in ``region`` (a token such as ``Aws.REGION`` is fine)."""
    return f"arn:aws:lambda:{region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:{POWERTOOLS_LAYER_NAME}:{version}"


@dataclass(frozen=True)
class FunctionDefaults:
    """What every function of the app shares: code, layers and the environment of ``core.settings``."""

    code: lambda_.Code
    layers: Sequence[lambda_.ILayerVersion]
    environment: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, scope: Construct, *, environment: Mapping[str, str]) -> FunctionDefaults:
        """The asset of ``lambdas/`` and the Powertools layer of the stack's Region."""
        layer = lambda_.LayerVersion.from_layer_version_arn(
            scope, "PowertoolsLayer", powertools_layer_arn(Stack.of(scope).region)
        )
        code = lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=list(ASSET_EXCLUDES))
        return cls(code=code, layers=(layer,), environment=dict(environment))


class PipelineFunction(Construct):
    """One handler of ``image_pipeline``: a function with its own role, log group and active tracing.

    :param spec: the function's row of ``image_pipeline.functions`` (its handler's dotted path).
    :param defaults: the shared code, layers and environment.
    :param environment: variables added to (or overriding) the shared environment.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: LambdaFunction,
        description: str,
        defaults: FunctionDefaults,
        timeout: Duration,
        memory_size: int = 256,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"imagegen {spec.module}: its log group and what it is granted",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            code=defaults.code,
            handler=spec.handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            layers=list(defaults.layers),
            memory_size=memory_size,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={**defaults.environment, **(environment or {})},
        )


def arn_substitutions(steps: Iterable[PipelineFunction]) -> dict[str, str]:
    """ASL placeholder -> function ARN of each of ``steps`` that a Task state calls."""
    return {step.spec.placeholder: step.function.function_arn for step in steps if step.spec.placeholder}
