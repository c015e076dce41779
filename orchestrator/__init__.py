"""contact-orchestrator: drives Amazon Connect WebRTC contacts from queued call requests."""

__version__ = "0.1.0"

__all__ = ["__version__"]
