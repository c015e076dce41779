"""A client span for every Connect call attempt (RPC semantic conventions, `aws-api`).

`traced_attempt` decorates the gateway's one attempt method: the span covers the wait for the
rate-budget token (an event `rate_budget.waited` when it had to wait; a DescribeContact's and a
StopContact's first token is taken before the call is set up, so that wait is an event of the
span around it) and the call, and says
which operation, which attempt of its retry policy, the AWS request id, the HTTP status, and
whether Connect throttled it. Nothing happens (beyond one check) when tracing is off.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from botocore.exceptions import ClientError

from orchestrator import tracing
from orchestrator.connect.operations import Operation
from orchestrator.errors import CapacityError, ConnectError, ThrottledError
from orchestrator.retry import current_attempt
from orchestrator.tracing import AttributeValue, SpanKind

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

#: `rpc.service` of every Connect span, and the prefix of its name (`Connect.DescribeContact`).
SERVICE = "Connect"


def _metadata(response: Any) -> Mapping[str, Any]:
    if isinstance(response, Mapping):
        metadata = response.get("ResponseMetadata")
        if isinstance(metadata, Mapping):
            return metadata
    return {}


def _answer(metadata: Mapping[str, Any]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    if metadata.get("RequestId"):
        out["aws.request_id"] = str(metadata["RequestId"])
    if metadata.get("HTTPStatusCode"):
        out["http.response.status_code"] = int(metadata["HTTPStatusCode"])
    return out


def call_attributes(operation: str) -> dict[str, AttributeValue]:
    return {
        "rpc.system": "aws-api",
        "rpc.service": SERVICE,
        "rpc.method": operation,
        "orchestrator.attempt": current_attempt(),
    }


def error_attributes(error: ConnectError) -> dict[str, AttributeValue]:
    """What a failed attempt's span says: the AWS code, throttled or not, and the answer's ids."""
    cause = error.__cause__
    out: dict[str, AttributeValue] = {
        "error.type": error.code,
        "orchestrator.connect.throttled": isinstance(error, ThrottledError),
        "orchestrator.connect.at_capacity": isinstance(error, CapacityError),
    }
    if isinstance(cause, ClientError):
        out.update(_answer(_metadata(cause.response)))
    return out


def traced_attempt(
    method: Callable[Concatenate[S, Operation, P], Awaitable[R]],
) -> Callable[Concatenate[S, Operation, P], Awaitable[R]]:
    """Wrap the gateway's `_attempt(self, operation, call, ...)` in a client span."""

    @functools.wraps(method)
    async def attempt(self: S, operation: Operation, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not tracing.enabled():
            return await method(self, operation, *args, **kwargs)
        with tracing.span(
            f"{SERVICE}.{operation}", kind=SpanKind.CLIENT, attributes=call_attributes(operation)
        ) as span:
            try:
                result = await method(self, operation, *args, **kwargs)
            except ConnectError as error:
                span.set_attributes(error_attributes(error))
                raise
            span.set_attributes(_answer(_metadata(result)))
            return result

    return attempt
