"""The one stack: it composes the constructs, wires them together, tags them and checks them with cdk-nag.

Storage -> events -> workflow (needs the bucket and the bus) -> batch (needs the bucket and the jobs
workflow) -> API (needs both workflows) -> web page (needs the API's URL; the API allows the page's
origin) -> monitoring (alarms and a dashboard over all of them). Each construct builds its own concern;
this module only passes values between them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import jsii
from aws_cdk import CfnOutput, IStableStringProducer, Lazy, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.admission import AdmissionControl
from stacks.api import ImageApi
from stacks.batch import UPLOAD_KEYS, BatchConstruct
from stacks.config import ImagegenConfig
from stacks.events import WorkflowEvents
from stacks.functions import FunctionDefaults
from stacks.index import SPEND_LEDGER_ACTIONS, SPEND_LEDGER_KEYS, ImageIndexTable
from stacks.links import LastingLinks
from stacks.model_access import checked_model_offers
from stacks.monitoring import MonitoringConstruct
from stacks.nag import check_with_cdk_nag
from stacks.openai_api import OpenAiImagesApi
from stacks.request_schema import image_request_schema
from stacks.sign_in import SCOPES as SIGN_IN_SCOPES
from stacks.sign_in import UserSignIn
from stacks.storage import ImageStorage
from stacks.web import WebConstruct
from stacks.webhooks import SignedWebhooks
from stacks.workflow import IMAGE_KEYS, ImageWorkflow


@jsii.implements(IStableStringProducer)
class _ApiUrl:
    """The API's URL, produced at synthesis (the web page is built before the API, which needs the
    page's origin for CORS)."""

    def __init__(self, stack: ImagegenStack) -> None:
        self._stack = stack

    def produce(self) -> str:
        return self._stack.api.url


#: The page's address when the stack has no page of its own (``imagegen serve --web-dir web``).
LOCAL_PAGE_URL = "http://localhost:8000/"


@jsii.implements(IStableStringProducer)
class _PageClientId:
    """The page's user pool client id, produced at synthesis (the client is made after the page)."""

    def __init__(self, sign_in: UserSignIn) -> None:
        self._sign_in = sign_in

    def produce(self) -> str:
        assert self._sign_in.client is not None, "the page's client is made with the page"
        return self._sign_in.client.user_pool_client_id


class ImagegenStack(Stack):
    """imagegen: images bucket, event bus, workflows, API and web page for one configuration."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ImagegenConfig,
        today: date | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="imagegen: parallel image generation with Amazon Bedrock and AWS Step Functions",
            **kwargs,
        )
        self.config = config
        #: How each allowed model is invoked here; synthesis stops first if one is retired or not offered.
        self.model_offers = checked_model_offers(self, config, today=today)

        self.storage = ImageStorage(
            self,
            "Storage",
            image_expiration_days=config.image_expiration_days,
            versioned=config.bucket_versioning,
            destroy_on_removal=config.destroy_on_removal,
        )
        #: The image index (jobs and images as they are made; the prompt cache), same retention as images.
        self.index = ImageIndexTable(self, "Index", destroy_on_removal=config.destroy_on_removal)
        self.events = WorkflowEvents(self, "Events")
        defaults = FunctionDefaults.create(
            self,
            environment=config.lambda_environment(
                images_bucket=self.storage.images_bucket.bucket_name,
                index_table=self.index.table.table_name,
            ),
        )
        self.workflow = ImageWorkflow(
            self,
            "Workflow",
            images_bucket=self.storage.images_bucket,
            event_bus=self.events.bus,
            models=self.model_offers,
            defaults=defaults,
            marketplace_first_use=config.marketplace_first_use if config.marketplace_models else "off",
        )
        #: One admission control per model, shared by every execution (issue 15).
        self.admission = AdmissionControl(self, "Admission", model_concurrency=config.model_concurrency)
        self.admission.connect(self.workflow.admission.function)
        self.admission.connect(self.workflow.generate_image.function)
        self.admission.keep(self.workflow.admission.function)
        self.admission.forget_ended(self.workflow.admission.function, self.workflow.standard)
        self.events.start_on_request(self.workflow.standard)
        self.batch = BatchConstruct(
            self,
            "Batch",
            bucket=self.storage.images_bucket,
            per_request_state_machine=self.workflow.standard,
            defaults=defaults,
            max_concurrency=config.batch_max_concurrency,
            tolerated_failure_percentage=config.batch_tolerated_failure_percentage,
            dead_letter_queue=self.events.dead_letters,
        )

        #: Sign-in (imagegen:apiAuth=cognito): the user pool whose ID tokens authorize every route.
        self.sign_in = (
            UserSignIn(
                self,
                "SignIn",
                domain_prefix=config.cognito_domain_prefix,
                destroy_on_removal=config.destroy_on_removal,
            )
            if config.api_auth == "cognito"
            else None
        )
        cors_origins = list(config.cors_origins)
        self.web: WebConstruct | None = None
        if config.web:
            self.web = WebConstruct(
                self,
                "Web",
                api_url=Lazy.string(_ApiUrl(self)),
                api_key_required=config.api_auth == "apiKey",
                sign_in=self._page_sign_in(),
                access_logs_bucket=self.storage.logs_bucket,
                distribution_logs_bucket=self.storage.logs_bucket,
                destroy_on_removal=config.destroy_on_removal,
            )
            if cors_origins != ["*"]:
                cors_origins.insert(0, f"https://{self.web.distribution.distribution_domain_name}")
        if self.sign_in is not None:
            # The page's address is the client's callback; without the page, the local server's page
            # (imagegen serve --web-dir web) may sign in against the deployment (http only on localhost).
            self.sign_in.add_page_client(self.web.url if self.web is not None else LOCAL_PAGE_URL)

        self.api = ImageApi(
            self,
            "Api",
            jobs_workflow=self.workflow.standard,
            images_bucket=self.storage.images_bucket,
            defaults=defaults,
            request_schema=image_request_schema(),
            auth=config.api_auth,
            throttle=config.throttle,
            cors_origins=cors_origins,
            sign_in=self.sign_in,
        )
        #: The synchronous routes look at the model's queue before they wait (issue 15).
        self.admission.let_read_queues(self.api.http_api.function)
        #: Links that last as long as the images (GET /links/{token}); the HTTP API function mints them.
        self.links = LastingLinks(
            self,
            "Links",
            rest_api=self.api.rest_api,
            images_bucket=self.storage.images_bucket,
            defaults=defaults,
            lifetime_seconds=config.link_lifetime_seconds,
        )
        self.links.grant_minting(self.api.http_api)
        #: Signed webhooks: each ended job with a webhook is POSTed to it, signed, retried for over a day.
        self.webhooks = SignedWebhooks(
            self,
            "Webhooks",
            jobs_workflow=self.workflow.standard,
            images_bucket=self.storage.images_bucket,
            defaults=defaults,
        )
        self.webhooks.grant_reading_records(self.api.http_api.role, self.storage.images_bucket)
        self.webhooks.grant_queueing_images(self.workflow.generate_image)
        #: Lasting links in the stored manifest.json and in the webhooks' bodies too.
        self.links.grant_minting(self.workflow.build_manifest)
        self.links.grant_minting(self.webhooks.deliverer)
        #: The OpenAI-compatible API (POST /v1/images/generations): with API keys, in their usage plan, or
        #: with sign-in, the user pool's authorizer (the SDK sends its key or ID token as a Bearer token;
        #: there is no SigV4 in OpenAI's SDKs, so none with IAM auth).
        self.openai_api = (
            OpenAiImagesApi(
                self,
                "OpenAiApi",
                http_api=self.api.http_api.function,
                usage_plan=self.api.usage_plan,
                defaults=defaults,
                throttle=config.throttle,
                sign_in=self.sign_in,
            )
            if self.api.usage_plan is not None or self.sign_in is not None
            else None
        )

        self._grant_index()

        self.monitoring = MonitoringConstruct(
            self,
            "Monitoring",
            state_machines={
                "Jobs": self.workflow.standard,
                "Batch": self.batch.state_machine,
            },
            functions=[
                step.function
                for step in (
                    *self.workflow.functions,
                    self.api.http_api,
                    *self.batch.functions,
                    self.webhooks.deliverer,
                    self.links.follower,
                )
            ],
            dead_letter_queues={"WebhookDeliveries": self.webhooks.dead_letters},
            api=self.api.rest_api,
            alarm_topic_email=config.alarm_email,
            models=config.allowed_models,
        )

        Tags.of(self).add("project", "imagegen")
        self._outputs()
        check_with_cdk_nag(self)

    def _page_sign_in(self) -> dict[str, str] | None:
        """What the page needs to sign people in (``config.js``'s ``auth``): the hosted domain, its
        client's id (made after the page, whose address is its callback: read at synthesis) and scope."""
        if self.sign_in is None:
            return None
        sign_in = self.sign_in
        return {
            "domain": sign_in.domain_url,
            "clientId": Lazy.string(_PageClientId(sign_in)),
            "scope": " ".join(scope.scope_name for scope in SIGN_IN_SCOPES),
        }

    def _grant_index(self) -> None:
        """Where the image index meets the functions: the workflow writes its items (the job's by
        ValidateRequest and BuildManifest, each image's by GenerateImage), the image branch reads the
        cache's index and copies a cached PNG (GetObject of the source), the HTTP API function writes a
        job's item as it starts it, reads its caller's items (GET /jobs, GET /images/search) and
        settles a listed job whose execution has ended."""
        table = self.index.table
        workflow = self.workflow
        # Statements of their own, not TableV2.grant (which adds <table>/index/* to every action).
        for function, action in (
            (workflow.validate_request.function, "dynamodb:UpdateItem"),
            (workflow.generate_image.function, "dynamodb:PutItem"),
            (workflow.build_manifest.function, "dynamodb:UpdateItem"),
            (self.api.http_api.function, "dynamodb:UpdateItem"),
        ):
            function.add_to_role_policy(  # a job's and its images' items only (JOB#<ns>#<job>)
                iam.PolicyStatement(
                    sid="WriteImageIndex",
                    actions=[action],
                    resources=[table.table_arn],
                    conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["JOB#*"]}},
                )
            )
        for function in (workflow.generate_image.function, self.api.http_api.function):
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="QueryImageIndex", actions=["dynamodb:Query"], resources=[self.index.indexes_arn]
                )
            )
        # The daily spend ledger (core/spend.py) is the table's SPEND#<namespace> items: reserved by the
        # API and the first step, settled by BuildManifest, read and written item by item (no query).
        for function in (
            workflow.validate_request.function,
            workflow.build_manifest.function,
            self.api.http_api.function,
        ):
            function.add_to_role_policy(
                iam.PolicyStatement(
                    sid="SpendLedger",
                    actions=list(SPEND_LEDGER_ACTIONS),
                    resources=[table.table_arn],
                    conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [SPEND_LEDGER_KEYS]}},
                )
            )
        workflow.generate_image.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="CopyCachedImages",
                actions=["s3:GetObject"],
                resources=[self.storage.images_bucket.arn_for_objects(IMAGE_KEYS)],
            )
        )

    def _outputs(self) -> None:
        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the API")
        if self.openai_api is not None:
            CfnOutput(
                self,
                "OpenAiBaseUrl",
                value=self.openai_api.base_url,
                description="OpenAI(base_url=<this>, api_key=<an API key>): POST /v1/images/generations",
            )
        if self.api.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <this id>",
            )
        if self.api.usage_plan is not None:
            CfnOutput(
                self,
                "UsagePlanId",
                value=self.api.usage_plan.usage_plan_id,
                description="The clients' usage plan: imagegen keys create|list|revoke manages its keys",
            )
        CfnOutput(
            self,
            "LinksSecretArn",
            value=self.links.secret.secret_arn,
            description="The HMAC key of the lasting links (GET /links/{token}); changing it revokes them all",
        )
        CfnOutput(
            self,
            "WebhookSecretArn",
            value=self.webhooks.secret.secret_arn,
            description="The webhooks' signing secret: receivers verify with whsec_<its value> (Standard Webhooks)",
        )
        CfnOutput(
            self,
            "WebhookDeadLetterQueueArn",
            value=self.webhooks.dead_letters.queue_arn,
            description="Undelivered webhooks: aws sqs start-message-move-task --source-arn <this> "
            "--destination-arn <WebhookDeliveryQueueArn> redrives them",
        )
        CfnOutput(
            self,
            "WebhookDeliveryQueueArn",
            value=self.webhooks.queue.queue_arn,
            description="The webhook delivery queue: where undelivered webhooks are redriven to",
        )
        CfnOutput(self, "ImagesBucketName", value=self.storage.images_bucket.bucket_name)
        CfnOutput(self, "ImageIndexTableName", value=self.index.table.table_name)
        CfnOutput(
            self,
            "AdmissionSlotsTableName",
            value=self.admission.table.table_name,
            description="Admission control's slots: one item per model, in_use and a lease per holder",
        )
        CfnOutput(
            self,
            "AdmissionWaitersTableName",
            value=self.admission.waiters.table_name,
            description="Admission control's queue: a ticket per waiting branch (model, place), "
            "and each model's waiting counter (place ~waiting)",
        )
        CfnOutput(self, "JobsStateMachineArn", value=self.workflow.standard.state_machine_arn)
        CfnOutput(self, "EventBusName", value=self.events.bus.event_bus_name)
        CfnOutput(self, "BatchStateMachineArn", value=self.batch.state_machine.state_machine_arn)
        CfnOutput(
            self,
            "BatchUploadKeys",
            value=f"s3://{self.storage.images_bucket.bucket_name}/{UPLOAD_KEYS}",
            description="Upload a JSONL file of requests here to start a batch",
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://console.aws.amazon.com/cloudwatch/home?region={self.region}"
            f"#dashboards:name={self.monitoring.dashboard.dashboard_name}",
        )
        if self.web is not None:
            CfnOutput(self, "WebUrl", value=self.web.url, description="The web page")
        if self.sign_in is not None:
            CfnOutput(
                self,
                "UserPoolId",
                value=self.sign_in.user_pool.user_pool_id,
                description="aws cognito-idp admin-create-user --user-pool-id <this> --username <e-mail>",
            )
            CfnOutput(
                self,
                "SignInUrl",
                value=self.sign_in.domain_url,
                description="The user pool's hosted sign-in (/oauth2/authorize, /oauth2/token, /logout)",
            )
            if self.sign_in.client is not None:
                CfnOutput(
                    self,
                    "PageClientId",
                    value=self.sign_in.client.user_pool_client_id,
                    description="The page's app client (authorization code with PKCE, no secret)",
                )
