"""Run the real Lambda handlers in-process when moto's (Docker-less) Lambda is invoked.

moto's simple Lambda backend only echoes the payload; this adapter replaces its `invoke` with a call to
the function's real handler, under the function's own environment variables, and maps a raised exception
to Lambda's `Unhandled` function error with the exception's class name as `errorType` (a result that is
not JSON to `Runtime.MarshalError`), so that the state machine's Retry and Catch rules see what they
would see on AWS.

Invocations run concurrently, each in the calling thread, as Lambda runs concurrent invocations in
separate execution environments (the SQS event source runs several batches at once). The handlers read
their environment from os.environ (FunctionSettings.from_env; boto3 reads AWS_* variables), which a
process has once. So, while any invocation runs, os.environ's class is `_ThreadEnviron`: a thread that
runs an invocation sees the process environment with its function's variables over it (and its own
changes), discarded when the invocation ends; every other thread sees the process environment itself,
unchanged. The class of the one os.environ object is changed, not the object replaced, because boto3
sessions and others hold a reference to it. Likewise, what handlers print goes through one stdout
(`_InvocationOutput`) to the invoking registry's log stream, chosen per thread.

Module-level state of the handlers' modules (Powertools' Logger keys and Metrics) is shared by
concurrent invocations here, where Lambda would give each environment its own: the metrics provider's
methods run under one lock while invocations run (a flush never meets a set being changed); log lines may
carry another concurrent invocation's appended keys.
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

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core import DEFAULT_ACCOUNT_ID

# (logical id, or the function name without one; event) at the start of each invocation
InvokeHook = Callable[[str, dict[str, Any]], None]


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
    """The handlers' stdout while invocations run: each thread's writes go to its invocation's sink, or
    to the stdout that was current before (also for threads that run no invocation).

    One instance serves every registry: a Powertools Logger binds sys.stdout when its module is first
    imported, so a later registry (another run in the same process) must still be the one it writes to.
    """

    def __init__(self) -> None:
        self._thread = threading.local()  # .sink: the invocation's log stream (None: the process stdout)
        self._lock = threading.Lock()
        self._routing = 0  # invocations running with sys.stdout set to this
        self._previous: IO[str] | None = None  # sys.stdout before the first of them

    def writable(self) -> bool:
        return True

    def _target(self) -> IO[str] | None:
        sink: IO[str] | None = getattr(self._thread, "sink", None)
        if sink is not None:
            return sink
        if self._previous is not None:
            return self._previous
        return sys.stdout if sys.stdout is not self else sys.__stdout__

    def write(self, text: str) -> int:
        target = self._target()
        return target.write(text) if target is not None else len(text)

    def flush(self) -> None:
        target = self._target()
        if target is not None:
            target.flush()

    @contextlib.contextmanager
    def routing(self, sink: IO[str] | None) -> Iterator[None]:
        """This thread's output to sink (or the process's stdout) for the block; sys.stdout is this
        while any thread's block runs."""
        with self._lock:
            if self._routing == 0:
                self._previous, sys.stdout = sys.stdout, self
            self._routing += 1
        outer, self._thread.sink = getattr(self._thread, "sink", None), sink
        try:
            yield
        finally:
            self._thread.sink = outer
            with self._lock:
                self._routing -= 1
                if self._routing == 0:
                    sys.stdout, self._previous = self._previous or sys.__stdout__, None


_OUTPUT = _InvocationOutput()


class InProcessLambdas:
    """A registry of functions whose invocations run their handlers in this process, each in the thread
    that invokes it (concurrently, each under its own function's environment: `invocation_environment`).

    With `log_stream`, what the handlers print (Powertools' JSON logs, EMF metrics) goes there; without
    it, to the process's stdout.
    """

    def __init__(self, log_stream: IO[str] | None = None) -> None:
        self.log_stream = log_stream
        self.functions: dict[str, FunctionSpec] = {}
        # (logical id, or the function name without one; error type or None), in invocation order
        self.invocations: list[tuple[str, str | None]] = []
        self.hooks: list[InvokeHook] = []
        self._running = 0  # invocations under way, all threads together
        self._idle = threading.Condition()

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
        with self._counted(), invocation_environment(spec.environment), _OUTPUT.routing(self.log_stream):
            for hook in self.hooks:  # part of the invocation: it is under way while they run
                hook(spec.logical_id or spec.name, event)
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
    def _counted(self) -> Iterator[None]:
        with self._idle:
            self._running += 1
        try:
            yield
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation is under way (Lambda runs an invocation to its end whatever happens
        to the execution that made it: StopExecution does not cancel it); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout=timeout)

    @contextlib.contextmanager
    def installed(self) -> Iterator[InProcessLambdas]:
        """Route moto's Lambda Invoke to the registered handlers for the block's duration. Each handler's
        module is imported first, under its function's environment, as Lambda's init phase does: module-
        level state (Powertools' Logger service, Metrics namespace) is read from the environment at import,
        and a module imported later by the runner's own code outside any invocation (latest.json's reader)
        would otherwise build it without the function's variables (no namespace: every flush fails), and
        with the process's stdout as the log's stream rather than the per-invocation routing."""
        for spec in self.functions.values():
            module_name = spec.handler.rpartition(".")[0]
            with invocation_environment(spec.environment), _OUTPUT.routing(self.log_stream):
                importlib.import_module(module_name)
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


class _ThreadEnviron(os._Environ):
    """os.environ's class while invocations run: the invoking thread's overlay (`_THREAD.overlay`, a
    variable → value, or None where the invocation removed it) over the process environment; a thread
    without an overlay reads and writes the process environment."""

    def __getitem__(self, key: str) -> str:
        overlay = _overlay()
        if overlay is not None and key in overlay:
            value = overlay[key]
            if value is None:
                raise KeyError(key)
            return value
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: str) -> None:
        overlay = _overlay()
        if overlay is None:
            super().__setitem__(key, value)
            return
        self.encodekey(key), self.encodevalue(value)  # the type checks os.environ makes
        overlay[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = _overlay()
        if overlay is None:
            super().__delitem__(key)
            return
        self[key]  # KeyError when absent, as os.environ
        overlay[key] = None

    def __iter__(self) -> Iterator[str]:
        overlay = _overlay()
        if overlay is None:
            yield from super().__iter__()
            return
        yield from (key for key in list(super().__iter__()) if key not in overlay)
        yield from (key for key, value in list(overlay.items()) if value is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)


_THREAD = threading.local()  # .overlay: the environment of the invocation this thread runs
_ENVIRON_CLASS_LOCK = threading.Lock()
_overlays_installed = 0  # invocations running, all threads together; os.environ is _ThreadEnviron while > 0


def _overlay() -> dict[str, str | None] | None:
    return getattr(_THREAD, "overlay", None)


@contextlib.contextmanager
def invocation_environment(variables: dict[str, str]) -> Iterator[None]:
    """For the block, this thread (only) sees the process environment with `variables` over it; what it
    changes in os.environ meanwhile is its own and discarded afterwards. A nested block (an invocation
    made from a handler) starts again from the process environment, as another Lambda environment would."""
    global _overlays_installed
    with _ENVIRON_CLASS_LOCK:
        if _overlays_installed == 0:
            os.environ.__class__ = _ThreadEnviron
            _serialise_powertools_metrics(True)
        _overlays_installed += 1
    outer = _overlay()
    _THREAD.overlay = dict(variables)
    try:
        yield
    finally:
        _THREAD.overlay = outer
        with _ENVIRON_CLASS_LOCK:
            _overlays_installed -= 1
            if _overlays_installed == 0:
                os.environ.__class__ = os._Environ
                _serialise_powertools_metrics(False)


# Powertools' Metrics keep one metric set per process (the handlers' module-level `metrics`): Lambda runs
# each execution environment in a process of its own, while concurrent invocations here share it, and a
# flush iterating the set while another invocation adds to it would fail ("dictionary changed size").
# While invocations run, the provider's methods take one lock; metrics of concurrent invocations may then
# be flushed together, to the same log, which changes nothing the tests read.
_METRICS_METHODS = (
    "add_metric",
    "add_dimension",
    "add_dimensions",
    "add_metadata",
    "serialize_metric_set",
    "clear_metrics",
    "flush_metrics",
)
_METRICS_LOCK = threading.RLock()
_METRICS_ORIGINALS: dict[str, Any] = {}


def _serialise_powertools_metrics(on: bool) -> None:
    """Wrap (on) or unwrap the Powertools EMF provider's methods in _METRICS_LOCK."""
    provider = AmazonCloudWatchEMFProvider
    for name in _METRICS_METHODS:
        if on:
            original = _METRICS_ORIGINALS[name] = provider.__dict__[name]

            def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with _METRICS_LOCK:
                    return _original(*args, **kwargs)

            setattr(provider, name, locked)
        else:
            setattr(provider, name, _METRICS_ORIGINALS.pop(name))


# The process environment is changed (by `environment`) and copied (by `environment_snapshot`) only under
# this lock: the training backend copies it from its own thread while others set and restore variables,
# and an unlocked copy can meet a key that has just been removed (KeyError) or half of an update.
_ENVIRON_LOCK = threading.Lock()


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """Set these variables in the process environment for the block (every thread sees them); restore
    exactly these afterwards (and no others). In a thread running an invocation, they are its own."""
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
    """A copy of the environment as this thread sees it (the process environment, outside invocations),
    never torn by a change `environment` makes meanwhile in another thread."""
    with _ENVIRON_LOCK:
        return dict(os.environ)


def function_name_of(name_or_arn: str) -> str:
    """`name` from a function name, a partial or a full function ARN (qualifier dropped)."""
    return name_or_arn.split(":function:")[-1].split(":")[0]


def _error_document(message: str, error_type: str, stack_trace: list[str]) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack_trace})
