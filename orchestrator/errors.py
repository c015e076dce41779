"""The orchestrator's errors, rooted in one `OrchestratorError`.

AWS errors are classified once, in the Connect gateway, into these classes; the lifecycle acts on
the class, never on an error-code string.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error the orchestrator raises on purpose."""


class ConfigError(OrchestratorError):
    """The configuration is invalid; the message names the key."""


class ConnectError(OrchestratorError):
    """A Connect call failed. `code` is the AWS error code (or a transport error name)."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message
        #: The contact concerned, once known, and whether the lifecycle stopped it before it
        #: gave up (set by the lifecycle).
        self.contact_id: str | None = None
        self.contact_stopped: bool | None = None


class RetryableConnectError(ConnectError):
    """Worth retrying: 5xx, connection errors, timeouts, an early 404 after start."""


class ConnectUnavailable(RetryableConnectError):
    """Connect did not answer (connection refused, reset, timed out) or answered 5xx: when this
    outlasts a call's retry budget, Connect is unreachable for the deployment, not the request."""


class ThrottledError(RetryableConnectError):
    """HTTP 429: the account's quota for this operation is spent right now."""


class CapacityError(ConnectError):
    """The instance is at its concurrent-call cap: wait much longer before trying again."""


class TerminalConnectError(ConnectError):
    """Retrying cannot help: access denied, invalid parameter, unknown instance or flow."""


class DeploymentError(ConnectError):
    """The deployment is wrong, not the request: access denied, credentials missing, an endpoint
    that is not Connect, the configured default instance or flow unknown. Every request would
    fail the same way, so none is ended: the message goes back and `/readyz` fails."""


class FeatureUnavailable(ConnectError):
    """An optional operation this deployment may not call (access denied) or Connect does not
    offer here (an unknown operation): the feature that uses it turns itself off; nothing else
    is affected."""


class StartExpired(OrchestratorError):
    """The request's shelf life ended before any StartWebRTCContact attempt was sent for it."""


class StartWithdrawn(OrchestratorError):
    """The request was cancelled before any StartWebRTCContact attempt was sent for it."""


class DeploymentFault(OrchestratorError):
    """A lifecycle stopped on a fault of the deployment (`reason`: connect, sink); the request
    was not ended and its message must not be spent."""

    def __init__(self, reason: str, cause: Exception) -> None:
        super().__init__(f"{reason}: {cause}")
        self.reason = reason
        self.cause = cause


class RetryLater(OrchestratorError):
    """A transient failure outlived its retry budget; the request should be redelivered later."""

    def __init__(self, cause: ConnectError) -> None:
        super().__init__(f"transient failure outlived its retry budget: {cause}")
        self.cause = cause


class QueueError(OrchestratorError):
    """An SQS call about one message failed (the message stays where it was)."""


class SinkError(OrchestratorError):
    """An event could not be delivered to a sink, even after retries."""
