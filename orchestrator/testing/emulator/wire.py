"""Connect's rest-json wire format: success bodies, error responses and request ids."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

#: HTTP status of every error code the emulator answers with (from the service model).
ERROR_STATUS = {
    "InvalidParameterException": 400,
    "InvalidRequestException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    #: StopContact's "not active or does not exist".
    "ContactNotFoundException": 410,
    "ThrottlingException": 429,
    "LimitExceededException": 429,
    "TooManyRequestsException": 429,
    "InternalServiceException": 500,
    #: No operation at this method and path (what AWS front ends answer for a wrong route).
    "UnknownOperationException": 404,
}


class ApiError(Exception):
    """An error answer in Connect's wire format."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = ERROR_STATUS[code]


def new_request_id() -> str:
    return str(uuid.uuid4())


def json_response(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        headers={"x-amzn-RequestId": new_request_id()},
    )


def error_response(error: ApiError) -> web.Response:
    response = json_response({"Message": error.message}, status=error.status)
    response.headers["x-amzn-ErrorType"] = error.code
    return response


@web.middleware
async def unknown_routes_in_wire_format(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A path or method no operation serves gets a wire-format error, with a request id too."""
    if request.match_info.http_exception is None:  # routed: the endpoint answers for itself
        return await handler(request)
    message = f"No operation matches {request.method} {request.path}"
    return error_response(ApiError("UnknownOperationException", message))
