"""Run the real Lambda handlers in-process when moto's (Docker-less) Lambda is invoked.

moto's simple Lambda backend only echoes the payload; this adapter replaces its `invoke` with a call to
the function's real handler, under the function's own environment variables, and maps a raised exception
to Lambda's `Unhandled` function error with the exception's class name as `errorType`, so that the
state machine's Retry and Catch rules see what they would see on AWS.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from moto.awslambda_simple.models import LambdaSimpleBackend

InvokeHook = Callable[[str, dict[str, Any]], None]  # (function name, event) before each invocation


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of the Lambda context object that powertools and our handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass(frozen=True)
class FunctionSpec:
    """One deployed function: its handler path (`module.attr`) and environment."""

    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    memory_mb: int = 512


class _InvocationOutput(io.TextIOBase):
    """The handlers' stdout: forwards to the current sink, so a logger made at import follows it too."""

    def __init__(self) -> None:
        self.sink: IO[str] | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        target = self.sink or (sys.stdout if sys.stdout is not self else sys.__stdout__)
        return target.write(text) if target is not None else len(text)

    def flush(self) -> None:
        if self.sink:
            self.sink.flush()


class InProcessLambdas:
    """A registry of functions whose invocations run their handlers in this process (one at a time).

    With `log_stream`, what the handlers print (Powertools' JSON logs, EMF metrics) goes there.
    """

    def __init__(self, log_stream: IO[str] | None = None) -> None:
        self.log_stream = log_stream
        self._output = _InvocationOutput()
        self.functions: dict[str, FunctionSpec] = {}
        self.invocations: list[tuple[str, str | None]] = []  # (function name, error type or None)
        self.hooks: list[InvokeHook] = []
        self._lock = threading.RLock()  # handlers read os.environ: invocations must not interleave

    def register(self, spec: FunctionSpec) -> None:
        self.functions[spec.name] = spec

    def _spec(self, function_name: str) -> FunctionSpec:
        name = function_name.split(":function:")[-1].split(":")[0]
        try:
            return self.functions[name]
        except KeyError:
            raise KeyError(f"no in-process handler registered for Lambda function {name!r}") from None

    def call(self, function_name: str, event: Any) -> tuple[Any, str | None]:
        """Invoke a function's handler; return (result or error document, error type or None)."""
        spec = self._spec(function_name)
        module_name, _, attribute = spec.handler.rpartition(".")
        for hook in self.hooks:
            hook(spec.name, event)
        with self._lock, _environment(spec.environment), contextlib.redirect_stdout(self._output):
            self._output.sink = self.log_stream
            handler = getattr(importlib.import_module(module_name), attribute)
            context = LambdaContext(spec.name, spec.arn, spec.memory_mb)
            try:
                result = handler(event, context)
            except Exception as exc:
                error_type = type(exc).__name__
                self.invocations.append((spec.name, error_type))
                trace = traceback.format_exception(exc)
                return {"errorMessage": str(exc), "errorType": error_type, "stackTrace": trace}, error_type
        self.invocations.append((spec.name, None))
        return result, None

    @contextlib.contextmanager
    def installed(self) -> Iterator[InProcessLambdas]:
        """Route moto's Lambda Invoke to the registered handlers for the block's duration."""
        original = LambdaSimpleBackend.invoke
        registry = self

        def invoke(
            backend: LambdaSimpleBackend,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: dict[str, str],
        ) -> bytes:
            event = json.loads(body) if body else {}
            result, error_type = registry.call(function_name, event)
            if error_type is not None:
                response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(result, default=str).encode()

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
        try:
            yield self
        finally:
            LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
