"""The only code that talks to Amazon SQS (as `connect/` is for Connect): receiving, deleting and
changing visibility in batches, size-aware send batches, FIFO ids, what a queue says about itself
(redrive policy, dead-letter queue, size limits), the region in a queue URL, and SQS's limits by
name. It imports only the shared modules: the daemon (queue source, DLQ tools, `enqueue`), the
SQS event sink and the testing kit use it.
"""

from orchestrator.sqs import trace_context
from orchestrator.sqs.calls import (
    COPY_ATTRIBUTES,
    SendResult,
    change_visibility_batch,
    delete_batch,
    receive,
    send_batch,
)
from orchestrator.sqs.client import (
    aws_client_config,
    describe_problem,
    is_fifo,
    is_missing_queue,
    open_sqs,
    region_of,
)
from orchestrator.sqs.limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    FIFO_DEDUP_WINDOW_S,
    MAX_BATCH_ENTRIES,
    MAX_FIFO_ID_CHARS,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_TIME_S,
)
from orchestrator.sqs.messages import (
    OutgoingMessage,
    QueueMessage,
    batches,
    body_bytes,
    string_attributes,
)
from orchestrator.sqs.queues import (
    RedrivePolicy,
    approximate_counts,
    dead_letter_queue_of,
    max_message_bytes,
    queue_arn,
    redrive_policy,
    url_of_arn,
)
from orchestrator.sqs.source import QueueSource, SqsQueueSource

__all__ = [
    "COPY_ATTRIBUTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "FIFO_DEDUP_WINDOW_S",
    "MAX_BATCH_ENTRIES",
    "MAX_FIFO_ID_CHARS",
    "MAX_VISIBILITY_TIMEOUT_S",
    "MAX_WAIT_TIME_S",
    "OutgoingMessage",
    "QueueMessage",
    "QueueSource",
    "RedrivePolicy",
    "SendResult",
    "SqsQueueSource",
    "approximate_counts",
    "aws_client_config",
    "batches",
    "body_bytes",
    "change_visibility_batch",
    "dead_letter_queue_of",
    "delete_batch",
    "describe_problem",
    "is_fifo",
    "is_missing_queue",
    "max_message_bytes",
    "open_sqs",
    "queue_arn",
    "receive",
    "redrive_policy",
    "region_of",
    "send_batch",
    "string_attributes",
    "trace_context",
    "url_of_arn",
]
