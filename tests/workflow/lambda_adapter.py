"""Run Lambda handlers in-process when moto's Docker-less Lambda backend is invoked.

moto's LambdaSimpleBackend only echoes payloads; patching its `invoke` with LocalLambdas.invoke makes
Step Functions executions (moto's ASL interpreter) call the real handlers, with each function's
environment applied during the call. A raised exception becomes Lambda's `Unhandled` function error
with the exception's class name as `errorType`, so the ASL's Retry and Catch see what AWS would show.

Meant to move into the offline-stack package (issue 4). Environments are applied to os.environ, so
executions in one process run their Lambda calls one at a time (a lock serialises them).
"""

from __future__ import annotations

import importlib
import json
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from moto.awslambda_simple.models import LambdaSimpleBackend

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class LocalFunction:
    """A function: its handler ("module.function" or a callable) and environment variables."""

    name: str
    handler: str | Handler
    environment: Mapping[str, str] = field(default_factory=dict)

    def load(self) -> Handler:
        if callable(self.handler):
            return self.handler
        module, _, attribute = self.handler.rpartition(".")
        return getattr(importlib.import_module(module), attribute)


def function_name(name_or_arn: str) -> str:
    """`name` from a name, a partial or a full function ARN (qualifier dropped)."""
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


class LocalLambdas:
    """Registry of in-process functions and the moto patch that invokes them."""

    def __init__(self) -> None:
        self.functions: dict[str, LocalFunction] = {}
        self.calls: list[tuple[str, Any, str | None]] = []  # (function, event, errorType or None)
        self._lock = threading.Lock()

    def add(self, function: LocalFunction) -> None:
        self.functions[function.name] = function

    def invoke(self, name_or_arn: str, payload: bytes | str | None) -> tuple[bytes, str | None]:
        """Run the handler; return the response payload and the function error kind (None on success)."""
        name = function_name(name_or_arn)
        if name not in self.functions:
            raise KeyError(f"no local function {name!r}; known: {sorted(self.functions)}")
        function = self.functions[name]
        event = json.loads(payload) if payload else {}
        with self._lock, mock.patch.dict("os.environ", dict(function.environment)):
            try:
                result = function.load()(event, LambdaContext(function_name=name))
            except Exception as exc:
                self.calls.append((name, event, type(exc).__name__))
                error = {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }
                return json.dumps(error).encode(), "Unhandled"
        self.calls.append((name, event, None))
        return json.dumps(result).encode(), None

    def _backend_invoke(
        self,
        _backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        payload, error = self.invoke(function_name, body)
        if error:
            response_headers["x-amz-function-error"] = error
        return payload

    @contextmanager
    def installed(self) -> Iterator[LocalLambdas]:
        """Patch moto's Docker-less Lambda backend for the duration of the block."""
        adapter = self

        def invoke(backend: Any, *args: Any) -> bytes:
            return adapter._backend_invoke(backend, *args)

        with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
            yield self
