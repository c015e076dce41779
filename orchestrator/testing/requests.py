"""One valid call request, and the ids every test, benchmark and the demo send it with.

```python
from orchestrator.testing import request_body, request_document

await sqs.send_message(QueueUrl=url, MessageBody=request_body("order-1234"))
document = request_document("r-1", ScreenSharing=False)  # top-level fields replaced
```

The ids are placeholders in Connect's format; the emulator accepts them (and its allow-lists can
name them), no real account has them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

#: The region every local client is created in.
REGION = "us-east-1"
#: The Connect instance and contact flow the requests name.
INSTANCE_ID = "11111111-2222-3333-4444-555555555555"
FLOW_ID = "66666666-7777-8888-9999-000000000000"

#: Both sides may send video and share their screen.
SCREEN_SHARE_BOTH: dict[str, Any] = {
    "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
    "Agent": {"Video": "SEND", "ScreenShare": "SEND"},
}


def request_document(request_id: Any, **overrides: Any) -> dict[str, Any]:
    """A valid call request document (PascalCase, as it arrives on the queue).

    `overrides` replace top-level fields (`ScreenSharing=False`, `Attributes={...}`); the nested
    values are fresh copies, so a caller may change them in place. `request_id` is not checked,
    so a test can build an invalid one on purpose.
    """
    document: dict[str, Any] = {
        "RequestId": request_id,
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "ParticipantDetails": {"DisplayName": "Jane"},
        "AllowedCapabilities": copy.deepcopy(SCREEN_SHARE_BOTH),
    }
    document.update(overrides)
    return document


def customer_document(request_id: Any, index: int, **overrides: Any) -> dict[str, Any]:
    """The `index`-th request of a numbered run: its own customer name and order attribute."""
    fields: dict[str, Any] = {
        "ParticipantDetails": {"DisplayName": f"Customer {index}"},
        "Attributes": {"order": str(100_000 + index), "channel": "mobile-app"},
    }
    return request_document(request_id, **{**fields, **overrides})


def request_body(request_id: Any, **overrides: Any) -> str:
    """`request_document` as the JSON text of an SQS message body."""
    return json.dumps(request_document(request_id, **overrides))


def cancel_body(request_id: Any, contact_id: str | None = None, **overrides: Any) -> str:
    """A cancel message for `request_id` (naming its contact when `contact_id` is given)."""
    document: dict[str, Any] = {"Action": "cancel", "RequestId": request_id}
    if contact_id is not None:
        document |= {"ContactId": contact_id, "InstanceId": INSTANCE_ID}
    return json.dumps(document | overrides)
