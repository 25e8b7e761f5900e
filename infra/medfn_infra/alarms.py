"""Alarms, so a failed scan never vanishes silently: one SNS topic, and per function

- a dead-letter queue holding anything (its failed asynchronous invocations),
- an error rate over `ERROR_RATE_PERCENT` in a 5-minute window,
- any throttle (reserved concurrency reached: callers got 429s or the queue waited),

and per upload queue (a Lambda function's or a GPU scan worker's), its dead-letter queue holding
anything and its oldest message older than the pipeline's retries (and, for a series function, its
stability check's delay; for a GPU worker, its start from zero instances) can explain.
The topic is encrypted with the queue key and takes TLS only; CloudWatch may publish to it,
and use the key, for this account's alarms alone.
docs/deploy.md ("When an alarm fires") says how to see what is stuck and how to redrive it.
"""

from __future__ import annotations

import math

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from medfn_infra.functions import FunctionParts
from medfn_infra.pipeline import MAX_RECEIVES
from medfn_infra.settings import Settings
from medfn_infra.storage import Storage

PERIOD = Duration.minutes(5)
ERROR_RATE_PERCENT = 5
RUNBOOK = "docs/deploy.md, When an alarm fires"


class Alarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, storage: Storage, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Topic", display_name="medfn alarms", master_key=storage.queue_key, enforce_ssl=True
        )
        cloudwatch_service = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        own_alarms = {
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"},
        }
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[cloudwatch_service],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=own_alarms,
            )
        )
        storage.queue_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[cloudwatch_service],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions=own_alarms,
            )
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        self.action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

    def watch_function(self, name: str, parts: FunctionParts) -> None:
        function = parts.function
        errors = function.metric_errors(period=PERIOD, statistic="Sum")
        invocations = function.metric_invocations(period=PERIOD, statistic="Sum")
        self._alarm(
            f"{name}-error-rate",
            cloudwatch.MathExpression(
                expression="100 * errors / invocations",
                using_metrics={"errors": errors, "invocations": invocations},
                period=PERIOD,
                label=f"{name} errors (% of invocations)",
            ),
            threshold=ERROR_RATE_PERCENT,
            what=f"more than {ERROR_RATE_PERCENT}% of {name}'s invocations failed in 5 minutes",
        )
        self._alarm(
            f"{name}-throttles",
            function.metric_throttles(period=PERIOD, statistic="Sum"),
            threshold=0,
            what=f"{name} was throttled: its reserved concurrency was reached",
        )
        self._queue_holds_messages(f"{name}-dead-letters", parts.dead_letters, f"{name}'s failed asynchronous events")
        if parts.upload_queue is not None and parts.upload_dead_letters is not None:
            self.watch_upload_queue(
                name, parts.upload_queue, parts.upload_dead_letters, parts.timeout_s, parts.settle_s
            )

    def watch_upload_queue(
        self, name: str, queue: sqs.IQueue, dead_letters: sqs.IQueue, timeout_s: int, settle_s: float, start_s: int = 0
    ) -> None:
        """An upload queue's dead-letter queue holding anything, and its oldest message older than the
        retries (and a series' stability check's delay; a GPU worker's start from zero, `start_s`) explain."""
        self._queue_holds_messages(
            f"{name}-upload-dead-letters", dead_letters, f"scans {name} failed {MAX_RECEIVES} times"
        )
        # a message may wait MAX_RECEIVES visibility timeouts before the DLQ takes it; older is stuck
        stuck_after_s = MAX_RECEIVES * 6 * timeout_s + math.ceil(settle_s) + int(PERIOD.to_seconds()) + start_s
        self._alarm(
            f"{name}-upload-queue-age",
            queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
            threshold=stuck_after_s,
            what=f"a scan for {name} has waited over {stuck_after_s} s: the function is not consuming its queue",
        )

    def _queue_holds_messages(self, name: str, queue: sqs.IQueue, what: str) -> None:
        self._alarm(
            name,
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            threshold=0,
            what=f"the dead-letter queue holds {what}",
        )

    def _alarm(self, name: str, metric: cloudwatch.IMetric, *, threshold: float, what: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_name=f"{Stack.of(self).stack_name}-{name}",
            alarm_description=f"{what}. What to do: {RUNBOOK}.",
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self.action)
        self.alarms.append(alarm)
