"""Monitoring: CloudWatch alarms on the workflows, functions and API, an SNS topic for them, a dashboard.

Alarms (each notifies the topic, and treats missing data as fine: no traffic is not an incident):

* per state machine: failed executions (``ExecutionsFailed`` >= ``failed_executions_threshold`` in a
  period; a synchronous API's workflow also fails for invalid requests, hence a threshold above 1),
  timed-out executions and throttled executions (``ExecutionThrottled``: the Step Functions quota);
* ``ImagesThrottled`` >= 1: images that Bedrock still throttled after every retry (the model's quota
  in this Region is too small for the traffic; see ``docs/operations.md``);
* per function: ``Errors`` >= 1 and ``Throttles`` >= 1;
* the API, if given: ``5XXError`` >= 1;
* per dead-letter queue given (the undelivered webhooks'): ``ApproximateNumberOfMessagesVisible`` > 0
  (its Maximum in a period >= 1): something is waiting for an operator to look at it and redrive it
  (``docs/operations.md``).

The topic is encrypted with a customer managed KMS key (rotation on) whose policy lets CloudWatch use
it (alarms cannot publish to a topic under the AWS managed ``aws/sns`` key), and takes HTTPS only.

The dashboard: executions per state machine; images generated / filtered / failed / throttled; model
latency p50 / p99 (all models, and per model when ``models`` is given); admission control per model
(slots in use, branches waiting, time waited, takes throttled); Lambda errors, throttles and
duration per function; API requests, errors and latency; and the alarms' states.

Image metrics are the handlers' EMF metrics (``image_pipeline.core.observability``, named in
``image_pipeline.core.metric_names``): namespace ``imagegen``, dimension ``service`` (all models) or
``service`` + ``model``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from image_pipeline.core.metric_names import (
    ADMISSION_NO_SLOT,
    ADMISSION_SLOTS_IN_USE,
    ADMISSION_WAIT_SECONDS,
    ADMISSION_WAITING,
    IMAGES_FAILED,
    IMAGES_FILTERED,
    IMAGES_GENERATED,
    IMAGES_THROTTLED,
    MODEL_DIMENSION,
    MODEL_LATENCY,
    NAMESPACE,
    SERVICE,
)

#: The alarms' and graphs' default period.
DEFAULT_PERIOD = Duration.minutes(5)
#: A construct id of one of the app's function wrappers' inner function (its label is the parent's).
_INNER_IDS = ("Function", "Resource")


def _labelled_functions(
    functions: Mapping[str, lambda_.IFunction] | Sequence[lambda_.IFunction],
) -> dict[str, lambda_.IFunction]:
    if isinstance(functions, Mapping):
        return dict(functions)
    labelled: dict[str, lambda_.IFunction] = {}
    for function in functions:
        node = function.node
        label = node.scope.node.id if node.id in _INNER_IDS and node.scope is not None else node.id
        labelled[label] = function
    return labelled


class MonitoringConstruct(Construct):
    """Alarms, their topic and a dashboard for the app.

    :param state_machines: label -> state machine (e.g. ``{"Sync": ..., "Jobs": ..., "Batch": ...}``).
    :param functions: the Lambda functions, label -> function or a sequence (labels from construct ids).
    :param api: the REST API, for its 5xx alarm and its dashboard row.
    :param alarm_topic_email: an address subscribed to the alarm topic (it must confirm by e-mail).
    :param models: registry ids of the deployment's models, for per-model latency lines.
    :param failed_executions_threshold: failed executions of one state machine, in one period, that alarm.
    :param period: the alarms' and graphs' period.
    :param dead_letter_queues: label -> a dead-letter queue whose messages wait for an operator.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machines: Mapping[str, sfn.IStateMachine],
        functions: Mapping[str, lambda_.IFunction] | Sequence[lambda_.IFunction],
        api: apigw.RestApiBase | None = None,
        alarm_topic_email: str | None = None,
        models: Sequence[str] = (),
        failed_executions_threshold: int = 5,
        period: Duration = DEFAULT_PERIOD,
        dashboard_name: str | None = None,
        dead_letter_queues: Mapping[str, sqs.IQueue] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.period = period
        self.key = kms.Key(
            self,
            "AlarmTopicKey",
            description="imagegen: encrypts the alarm topic; CloudWatch may use it to publish alarms",
            enable_key_rotation=True,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name="imagegen alarms", master_key=self.key, enforce_ssl=True
        )
        if alarm_topic_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_topic_email))

        self.alarms: dict[str, cw.Alarm] = {}
        labelled = _labelled_functions(functions)
        for label, machine in state_machines.items():
            self._alarm(
                f"{label}ExecutionsFailed",
                machine.metric_failed(period=period, statistic="Sum"),
                failed_executions_threshold,
                f"{label} workflow: {failed_executions_threshold} or more failed executions in a period",
            )
            self._alarm(
                f"{label}ExecutionsTimedOut",
                machine.metric_timed_out(period=period, statistic="Sum"),
                1,
                f"{label} workflow: executions timed out",
            )
            self._alarm(
                f"{label}ExecutionsThrottled",
                machine.metric_throttled(period=period, statistic="Sum"),
                1,
                f"{label} workflow: Step Functions throttled executions (StartExecution / state transitions quota)",
            )
        self._alarm(
            "ImagesThrottled",
            self.image_metric(IMAGES_THROTTLED),
            1,
            "Bedrock still throttled images after every retry: the model's quota in this Region is too small "
            "for the traffic (lower the concurrency or ask for more quota)",
        )
        for label, function in labelled.items():
            self._alarm(
                f"{label}Errors",
                function.metric_errors(period=period, statistic="Sum"),
                1,
                f"{label} function: invocations ended with an error",
            )
            self._alarm(
                f"{label}Throttles",
                function.metric_throttles(period=period, statistic="Sum"),
                1,
                f"{label} function: invocations throttled (Lambda concurrency)",
            )
        if api is not None:
            self._alarm(
                "Api5xx",
                api.metric_server_error(period=period, statistic="Sum"),
                1,
                "API: responses with a 5xx status (workflow or integration failures, timeouts)",
            )

        for label, queue in (dead_letter_queues or {}).items():
            self._alarm(
                f"{label}DeadLetters",
                queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
                1,
                f"{label}: messages in the dead-letter queue, given up after every retry; see what failed "
                "and redrive them (docs/operations.md)",
            )

        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=dashboard_name, default_interval=Duration.hours(3)
        )
        self._dashboard(state_machines, labelled, api, models)

    # -- metrics and alarms -----------------------------------------------------------------------

    def image_metric(
        self, name: str, *, statistic: str = "Sum", model: str | None = None, labelled: bool = False
    ) -> cw.Metric:
        """One of the handlers' EMF metrics, for all models or for one (``labelled`` for graphs)."""
        dimensions = {"service": SERVICE}
        if model is not None:
            dimensions[MODEL_DIMENSION] = model
        metric = cw.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=self.period,
        )
        if not labelled:
            return metric
        return metric.with_(label=f"{name} {statistic}" if model is None else f"{model} {statistic}")

    def _alarm(self, name: str, metric: cw.IMetric, threshold: float, description: str) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=f"imagegen: {description}",
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms[name] = alarm
        return alarm

    # -- dashboard --------------------------------------------------------------------------------

    def _dashboard(
        self,
        state_machines: Mapping[str, sfn.IStateMachine],
        functions: Mapping[str, lambda_.IFunction],
        api: apigw.RestApiBase | None,
        models: Sequence[str],
    ) -> None:
        period = self.period
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown="# imagegen\nExecutions, images, model latency, functions and API. "
                "Runbook: `docs/operations.md`.",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            *(
                cw.GraphWidget(
                    title=f"{label} executions",
                    width=8,
                    left=[
                        machine.metric_started(period=period, statistic="Sum"),
                        machine.metric_succeeded(period=period, statistic="Sum"),
                        machine.metric_failed(period=period, statistic="Sum"),
                        machine.metric_timed_out(period=period, statistic="Sum"),
                        machine.metric_throttled(period=period, statistic="Sum"),
                    ],
                )
                for label, machine in state_machines.items()
            )
        )
        latency = [self.image_metric(MODEL_LATENCY, statistic=s, labelled=True) for s in ("p50", "p99")]
        latency += [self.image_metric(MODEL_LATENCY, statistic="p99", model=m, labelled=True) for m in models]
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Images (throttled: part of failed)",
                width=12,
                left=[
                    self.image_metric(n, labelled=True)
                    for n in (IMAGES_GENERATED, IMAGES_FILTERED, IMAGES_FAILED, IMAGES_THROTTLED)
                ],
            ),
            cw.GraphWidget(
                title="Model latency (ms)",
                width=12,
                left=latency,
                left_y_axis=cw.YAxisProps(label="ms", show_units=False),
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Lambda errors and throttles",
                width=12,
                left=[
                    f.metric_errors(period=period, statistic="Sum", label=f"{n} errors")
                    for n, f in functions.items()
                ],
                right=[
                    f.metric_throttles(period=period, statistic="Sum", label=f"{n} throttles")
                    for n, f in functions.items()
                ],
            ),
            cw.GraphWidget(
                title="Lambda duration p50 / p99 (ms)",
                width=12,
                left=[
                    f.metric_duration(period=period, statistic=s, label=f"{n} {s}")
                    for n, f in functions.items()
                    for s in ("p50", "p99")
                ],
            ),
        )
        if api is not None:
            self.dashboard.add_widgets(
                cw.GraphWidget(
                    title="API requests and errors",
                    width=12,
                    left=[
                        api.metric_count(period=period, statistic="Sum"),
                        api.metric_client_error(period=period, statistic="Sum"),
                        api.metric_server_error(period=period, statistic="Sum"),
                    ],
                ),
                cw.GraphWidget(
                    title="API latency p50 / p99 (ms)",
                    width=12,
                    left=[api.metric_latency(period=period, statistic=s) for s in ("p50", "p99")],
                ),
            )
        if models:
            self.dashboard.add_widgets(*self._admission_widgets(models))
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24)
        )

    def _admission_widgets(self, models: Sequence[str]) -> list[cw.GraphWidget]:
        """Admission control per model (``handlers/admission.py``'s metrics): slots in use and branches
        waiting (maximum), the seconds a branch waited for its slot (p50 / p99), takes DynamoDB throttled
        (``NoSlot``: a branch without a slot waits in the queue, it is not refused)."""
        return [
            cw.GraphWidget(
                title="Admission: slots in use / branches waiting (max)",
                width=8,
                left=[
                    self.image_metric(ADMISSION_SLOTS_IN_USE, statistic="Maximum", model=m).with_(
                        label=f"{m} in use"
                    )
                    for m in models
                ],
                right=[
                    self.image_metric(ADMISSION_WAITING, statistic="Maximum", model=m).with_(
                        label=f"{m} waiting in the queue"
                    )
                    for m in models
                ],
            ),
            cw.GraphWidget(
                title="Admission: time waited for a slot (s)",
                width=8,
                left=[
                    self.image_metric(ADMISSION_WAIT_SECONDS, statistic=s, model=m, labelled=True)
                    for m in models
                    for s in ("p50", "p99")
                ],
            ),
            cw.GraphWidget(
                title="Admission: takes throttled (NoSlot, each a retry)",
                width=8,
                left=[self.image_metric(ADMISSION_NO_SLOT, model=m, labelled=True) for m in models],
            ),
        ]
