"""A failed scan never vanishes silently: dead-letter queues, error rates, throttles and a stuck
upload queue each raise an alarm on one KMS-encrypted, TLS-only SNS topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Template

from tests.infra.stack_project import function_configs, function_id, lambdas, logical_prefix


def alarms(template: Template) -> list[dict[str, Any]]:
    return [a["Properties"] for a in template.find_resources("AWS::CloudWatch::Alarm").values()]


def on_metric(found: list[dict[str, Any]], metric: str, dimension: Any) -> list[dict[str, Any]]:
    """Alarms on `metric` (alone or inside metric math) whose dimension value is `dimension`."""
    hits = []
    for alarm in found:
        metrics = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
        if "MetricName" in alarm:
            metrics.append({"MetricName": alarm["MetricName"], "Dimensions": alarm.get("Dimensions", [])})
        if any(m["MetricName"] == metric and any(d["Value"] == dimension for d in m["Dimensions"]) for m in metrics):
            hits.append(alarm)
    return hits


def test_one_encrypted_tls_only_topic_that_only_this_accounts_alarms_publish_to(template: Template) -> None:
    [(topic_id, topic)] = template.find_resources("AWS::SNS::Topic").items()
    assert topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0].startswith("StorageQueueKey")
    [policy] = template.find_resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    [publish] = [s for s in statements if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and publish["Action"] == "sns:Publish"
    assert {"aws:SourceAccount"} <= set(publish["Condition"]["StringEquals"])
    assert ":alarm:*" in json.dumps(publish["Condition"]["ArnLike"]["aws:SourceArn"])
    for alarm in alarms(template):
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], alarm
        assert alarm.get("ActionsEnabled", True) and alarm["TreatMissingData"] == "notBreaching"
        assert "docs/deploy.md" in alarm["AlarmDescription"]


def test_every_function_alarms_on_errors_throttles_and_its_dead_letter_queue(
    template: Template, project_root: Path
) -> None:
    found = alarms(template)
    for name in [*function_configs(project_root), "platform", "health"]:
        function = {"Ref": function_id(template, name)}
        [rate] = on_metric(found, "Errors", function)
        assert on_metric([rate], "Invocations", function) == [rate]  # a rate: errors over invocations
        assert "100 * errors / invocations" in json.dumps(rate["Metrics"])
        assert rate["Threshold"] == 5 and rate["ComparisonOperator"] == "GreaterThanThreshold"
        [throttles] = on_metric(found, "Throttles", function)
        assert throttles["Threshold"] == 0 and throttles["Statistic"] == "Sum"
        dead_letters = lambdas(template)[function_id(template, name)]["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
        [depth] = on_metric(found, "ApproximateNumberOfMessagesVisible", {"Fn::GetAtt": [dead_letters, "QueueName"]})
        assert depth["Threshold"] == 0 and depth["Statistic"] == "Maximum"


def test_upload_queues_alarm_on_their_dead_letters_and_on_a_stuck_scan(template: Template, project_root: Path):
    found = alarms(template)
    resources = template.to_json()["Resources"]
    uploaders = {n: c for n, c in function_configs(project_root).items() if c.get("triggers", {}).get("uploads")}
    assert uploaders
    for name, config in uploaders.items():
        key = logical_prefix(name).removesuffix("Function")
        [queue] = [k for k, v in resources.items() if k.startswith(f"{key}Uploads") and v["Type"] == "AWS::SQS::Queue"]
        [dead_letters] = [
            k
            for k, v in resources.items()
            if k.startswith(f"{key}UploadDeadLetters") and v["Type"] == "AWS::SQS::Queue"
        ]
        [depth] = on_metric(found, "ApproximateNumberOfMessagesVisible", {"Fn::GetAtt": [dead_letters, "QueueName"]})
        assert depth["Threshold"] == 0
        [age] = on_metric(found, "ApproximateAgeOfOldestMessage", {"Fn::GetAtt": [queue, "QueueName"]})
        # older than every retry's visibility timeout (3 x 6 x timeout), a series' stability check
        # delay (settle_s) and one period: stuck
        timeout, settle = config.get("timeout_s", 30), config.get("series", {}).get("settle_s", 0)
        assert age["Threshold"] == 3 * 6 * timeout + settle + 300
        outputs = template.to_json()["Outputs"]
        assert f"{key}UploadDeadLettersUrl" in outputs and f"{key}UploadQueueArn" in outputs
