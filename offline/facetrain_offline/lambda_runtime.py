"""Run the real Lambda handlers in-process when moto's (Docker-less) Lambda is invoked.

moto's simple Lambda backend only echoes the payload; this adapter replaces its `invoke` with a call to
the function's real handler, under the function's own environment variables, and maps a raised exception
to Lambda's `Unhandled` function error with the exception's class name as `errorType` (a result that is
not JSON to `Runtime.MarshalError`), so that the state machine's Retry and Catch rules see what they
would see on AWS.

Environments are applied to os.environ, so invocations in one process run one at a time (a lock
serialises them); only the function's own variables are set and restored, never the whole environment,
because other threads (the local training backend) read it meanwhile.
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
from moto.core import DEFAULT_ACCOUNT_ID

InvokeHook = Callable[[str, dict[str, Any]], None]  # (function name, event) before each invocation


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of the Lambda context object that powertools and our handlers read.

    Without an ARN, the function's ARN in moto's account and the current region is used.
    """

    function_name: str
    invoked_function_arn: str = ""
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
            arn = f"arn:aws:lambda:{region}:{DEFAULT_ACCOUNT_ID}:function:{self.function_name}"
            object.__setattr__(self, "invoked_function_arn", arn)

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
    logical_id: str = ""  # the template's name for it (invocations are recorded under it when given)


class _InvocationOutput(io.TextIOBase):
    """The handlers' stdout: forwards to the current sink, so a logger made at import follows it too.

    One instance serves every registry: a Powertools Logger binds sys.stdout when its module is first
    imported, so a later registry (another run in the same process) must still be the one it writes to.
    """

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


_OUTPUT = _InvocationOutput()
_LOCK = threading.RLock()  # handlers read os.environ: invocations must not interleave, whatever registry


class InProcessLambdas:
    """A registry of functions whose invocations run their handlers in this process (one at a time).

    With `log_stream`, what the handlers print (Powertools' JSON logs, EMF metrics) goes there; without
    it, to the process's stdout.
    """

    def __init__(self, log_stream: IO[str] | None = None) -> None:
        self.log_stream = log_stream
        self.functions: dict[str, FunctionSpec] = {}
        # (logical id, or the function name without one; error type or None), in invocation order
        self.invocations: list[tuple[str, str | None]] = []
        self.hooks: list[InvokeHook] = []

    def register(self, spec: FunctionSpec) -> None:
        self.functions[spec.name] = spec

    def _spec(self, function_name: str) -> FunctionSpec:
        name = function_name_of(function_name)
        try:
            return self.functions[name]
        except KeyError:
            known = ", ".join(sorted(self.functions))
            raise KeyError(f"no in-process handler for Lambda function {name!r} (known: {known})") from None

    def call(self, function_name: str, event: Any) -> tuple[str, str | None]:
        """Invoke a function's handler; return (response payload as JSON, error type or None).

        On error the payload is Lambda's error document (errorMessage, errorType, stackTrace).
        """
        spec = self._spec(function_name)
        module_name, _, attribute = spec.handler.rpartition(".")
        for hook in self.hooks:
            hook(spec.name, event)
        with _LOCK, environment(spec.environment), _output_to(self.log_stream):
            handler = getattr(importlib.import_module(module_name), attribute)
            context = LambdaContext(spec.name, spec.arn, spec.memory_mb)
            try:
                result = handler(event, context)
            except Exception as exc:
                error_type: str | None = type(exc).__name__
                payload = _error_document(str(exc), error_type, traceback.format_tb(exc.__traceback__))
            else:
                try:
                    payload, error_type = json.dumps(result), None
                except (TypeError, ValueError) as exc:  # the runtime refuses a result that is not JSON
                    error_type = "Runtime.MarshalError"
                    payload = _error_document(f"Unable to marshal response: {exc}", error_type, [])
        self.invocations.append((spec.logical_id or spec.name, error_type))
        return payload, error_type

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
            payload, error_type = registry.call(function_name, event)
            if error_type is not None:
                response_headers["x-amz-function-error"] = "Unhandled"
            return payload.encode()

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
        try:
            yield self
        finally:
            LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


# os.environ is changed (by `environment`) and copied (by `environment_snapshot`) only under this lock:
# the training backend copies it from its own thread while invocations set and restore their variables,
# and an unlocked copy can meet a key that has just been removed (KeyError) or half of an update.
_ENVIRON_LOCK = threading.Lock()


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """Set these environment variables for the block; restore exactly these afterwards (and no others)."""
    with _ENVIRON_LOCK:
        saved = {key: os.environ.get(key) for key in variables}
        os.environ.update(variables)
    try:
        yield
    finally:
        with _ENVIRON_LOCK:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def environment_snapshot() -> dict[str, str]:
    """A copy of os.environ that no invocation in another thread is changing while it is taken."""
    with _ENVIRON_LOCK:
        return dict(os.environ)


def function_name_of(name_or_arn: str) -> str:
    """`name` from a function name, a partial or a full function ARN (qualifier dropped)."""
    return name_or_arn.split(":function:")[-1].split(":")[0]


def _error_document(message: str, error_type: str, stack_trace: list[str]) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack_trace})


@contextlib.contextmanager
def _output_to(sink: IO[str] | None) -> Iterator[None]:
    """Route what the handler prints to sink (or the process's stdout) for the invocation."""
    _OUTPUT.sink = sink
    try:
        with contextlib.redirect_stdout(_OUTPUT):
            yield
    finally:
        _OUTPUT.sink = None
