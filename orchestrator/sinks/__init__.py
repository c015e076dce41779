"""Where lifecycle events go: the log (always) plus any configured sinks."""

from .aws import EventBridgeSink, SnsEventSink, SqsEventSink
from .base import EventSink, FanoutSink, JsonlSink, LogSink, MemorySink, default_sink_policy
from .batching import BatchingSink

__all__ = [
    "BatchingSink",
    "EventBridgeSink",
    "EventSink",
    "FanoutSink",
    "JsonlSink",
    "LogSink",
    "MemorySink",
    "SnsEventSink",
    "SqsEventSink",
    "default_sink_policy",
]
