"""Where lifecycle events go: the log (always) plus any configured sinks."""

from orchestrator.engine.events import EventSink
from orchestrator.sinks.aws import EventBridgeSink, SnsEventSink, SqsEventSink
from orchestrator.sinks.base import (
    FanoutSink,
    JsonlSink,
    LogSink,
    MemorySink,
    default_sink_policy,
)
from orchestrator.sinks.batching import BatchingSink
from orchestrator.sinks.reply import ReplyRoutes, ReplySink

__all__ = [
    "BatchingSink",
    "EventBridgeSink",
    "EventSink",
    "FanoutSink",
    "JsonlSink",
    "LogSink",
    "MemorySink",
    "ReplyRoutes",
    "ReplySink",
    "SnsEventSink",
    "SqsEventSink",
    "default_sink_policy",
]
