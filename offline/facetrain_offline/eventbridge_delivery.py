"""EventBridge delivery as AWS does it, where moto's differs: S3 events as AWS sends them, and rules'
Lambda targets invoked.

moto routes an S3 upload through the bucket's EventBridge notifications and the template's rule into the
rule's SQS target, in the shape AWS uses, with gaps that `s3_events_as_aws_sends_them` closes:
every event carries the same id (AWS gives each its own; re-deliveries keep it), deleting from a
versioned bucket (a delete marker) sends no "Object Deleted" event, nor does permanently deleting a
version (DeleteObject or DeleteObjects with a VersionId, as the cleanup custom resource does) unless it is
the key's last (S3 sends one, deletion-type "Permanently Deleted", per object version deleted; moto's
events carry no deletion-type field), and a disabled rule still delivers S3 events. moto's EventBridge
delivers to SQS, log groups and buses but not to Lambda functions:
`lambda_targets_invoked` invokes a matching rule's Lambda targets with the event, as an asynchronous
invocation does (one attempt here: a failure is recorded with the in-process invocations, where Lambda
would retry twice and then use the function's dead-letter queue).

Both patch moto's classes for the block's duration and put them back after.
"""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import moto.events.utils
from moto.awslambda.utils import get_backend as lambda_backend
from moto.events.models import Rule
from moto.s3 import notifications
from moto.s3.models import FakeKey, S3Backend


class _FreshEventId(dict):
    """moto builds every S3 EventBridge event from one template dict with a fixed id; AWS gives each event
    its own id (re-deliveries keep it). Copying this template yields a new id each time."""

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(dict(self), memo), "id": str(uuid.uuid4())}


def _delete_with_marker_event(original: Any) -> Any:
    """S3Backend.delete_object that also announces, as AWS does, the delete marker of a versioned bucket
    and each object version permanently deleted (moto announces only a key's last version; deleting a
    delete marker announces nothing here)."""

    def delete_object(
        backend: S3Backend,
        bucket_name: str,
        key_name: str,
        version_id: str | None = None,
        bypass: bool = False,
    ) -> Any:
        bucket = backend.get_bucket(bucket_name)
        previous = bucket.keys.get(key_name) if bucket.is_versioned and version_id is None else None
        versions = bucket.keys.getlist(key_name, []) if bucket.is_versioned and version_id is not None else []
        removed = next((v for v in versions if str(v.version_id) == str(version_id)), None)
        result = original(backend, bucket_name, key_name, version_id, bypass)
        if isinstance(previous, FakeKey) and result[1].get("delete-marker") == "true":
            notifications.send_event(
                backend.account_id,
                notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
                bucket,
                previous,
            )
        elif isinstance(removed, FakeKey) and key_name in bucket.keys:  # moto's own event: the last one
            notifications.send_event(
                backend.account_id,
                notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_EVENT,
                bucket,
                removed,
            )
        return result

    return delete_object


@contextlib.contextmanager
def s3_events_as_aws_sends_them() -> Iterator[None]:
    """Each S3 event gets its own id, and delete markers are announced (see the module's docstring)."""
    original_message = moto.events.utils._BASE_EVENT_MESSAGE
    original_delete = S3Backend.delete_object
    original_send = Rule.send_to_targets

    def send_when_enabled(rule: Rule, event: Any, transform_input: bool = True) -> None:
        if rule.state != "DISABLED":
            original_send(rule, event, transform_input)

    moto.events.utils._BASE_EVENT_MESSAGE = _FreshEventId(original_message)
    S3Backend.delete_object = _delete_with_marker_event(original_delete)  # type: ignore[method-assign]
    Rule.send_to_targets = send_when_enabled  # type: ignore[method-assign]
    try:
        yield
    finally:
        moto.events.utils._BASE_EVENT_MESSAGE = original_message
        S3Backend.delete_object = original_delete  # type: ignore[method-assign]
        Rule.send_to_targets = original_send  # type: ignore[method-assign]


@contextlib.contextmanager
def lambda_targets_invoked() -> Iterator[None]:
    """EventBridge rules deliver to their Lambda targets too (see the module's docstring)."""
    original_send = Rule.send_to_targets

    def send(rule: Rule, event: Any, transform_input: bool = True) -> None:
        functions = [t for t in rule.targets if t["Arn"].split(":")[2] == "lambda"]
        others = copy.copy(rule)  # moto raises NotImplementedError for a Lambda target
        others.targets = [t for t in rule.targets if t not in functions]
        original_send(others, event, transform_input)
        if rule.state == "DISABLED" or not rule.event_pattern.matches_event(event):
            return
        for target in functions:
            if "Input" in target or "InputPath" in target or "InputTransformer" in target:
                raise NotImplementedError(f"rule {rule.name}: target input transformation is not supported")
            backend = lambda_backend(rule.account_id, rule.region_name)
            backend.invoke(target["Arn"], None, json.dumps(event, default=str), {}, {})

    Rule.send_to_targets = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        Rule.send_to_targets = original_send  # type: ignore[method-assign]
