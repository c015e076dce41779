"""Creates the local stack's queues, topic and bus for docker-compose (run once, idempotent).

Reads the same `ORCHESTRATOR_*` environment as the worker, so it creates exactly what the worker
is configured to use:

* the request queue (`[queue] url`) with a redrive policy to `<name>-dlq` after
  `[queue] max_receive_count` deliveries,
* the events queue (`[events] sqs_queue_url`), the SNS topic (`[events] sns_topic_arn`) and the
  EventBridge bus (`[events] eventbridge_bus`), when set,
* the contact-events queue (`[contact_events] queue_url`), when set: the emulator publishes
  Connect's contact events to it, as the EventBridge rule does in AWS,

all on the section's own `endpoint_url`, else `[aws] endpoint_url`. Runs in the
worker's image (botocore comes with aiobotocore): `python init_local_aws.py`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from botocore.exceptions import ClientError
from botocore.session import get_session

from orchestrator.daemon.settings import Settings, load_settings


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _client(settings: Settings, service: str, endpoint: str | None) -> Any:
    return get_session().create_client(
        service, region_name=settings.aws.region, endpoint_url=endpoint
    )


def create_request_queue(settings: Settings) -> str:
    sqs = _client(settings, "sqs", settings.endpoint("queue"))
    name = _queue_name(settings.queue.url)
    fifo = name.endswith(".fifo")
    base = name.removesuffix(".fifo")
    attrs = {"FifoQueue": "true"} if fifo else {}
    dlq_name = f"{base}-dlq" + (".fifo" if fifo else "")
    dlq_url = sqs.create_queue(QueueName=dlq_name, Attributes=attrs)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.queue.max_receive_count}
    )
    url: str = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive})
    return url


def create_sinks(settings: Settings) -> list[str]:
    events = settings.events
    endpoint = settings.endpoint("events")
    created: list[str] = []
    if events.sqs_queue_url:
        sqs = _client(settings, "sqs", endpoint)
        created.append(sqs.create_queue(QueueName=_queue_name(events.sqs_queue_url))["QueueUrl"])
    if events.sns_topic_arn:
        sns = _client(settings, "sns", endpoint)
        created.append(sns.create_topic(Name=events.sns_topic_arn.rsplit(":", 1)[-1])["TopicArn"])
    if events.eventbridge_bus:
        bus = _client(settings, "events", endpoint)
        try:
            created.append(bus.create_event_bus(Name=events.eventbridge_bus)["EventBusArn"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
            created.append(bus.describe_event_bus(Name=events.eventbridge_bus)["Arn"])
    return created


def create_contact_events_queue(settings: Settings) -> list[str]:
    url = settings.contact_events.queue_url
    if not url:
        return []
    sqs = _client(settings, "sqs", settings.endpoint("contact_events"))
    return [sqs.create_queue(QueueName=_queue_name(url))["QueueUrl"]]


def main() -> int:
    settings = load_settings()
    created = [
        create_request_queue(settings),
        *create_sinks(settings),
        *create_contact_events_queue(settings),
    ]
    for resource in created:
        print(f"ready: {resource}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
