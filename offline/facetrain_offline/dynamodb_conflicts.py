"""DynamoDB's transaction conflicts, which moto does not model, and atomic item requests in moto.

On DynamoDB (developer guide, "Transaction conflict handling"), a TransactWriteItems that touches an
item another TransactWriteItems is writing is cancelled with TransactionCanceledException, reason
`TransactionConflict` for that item (`None` for the others), and a PutItem, UpdateItem or DeleteItem of
such an item fails with TransactionConflictException; neither writes anything. moto's
`DynamoDBBackend.transact_write_items` has no notion of a transaction in progress: it applies the actions
one by one in the calling thread and, when one fails, puts back a copy of each table taken before it
began, undoing whatever another thread wrote meanwhile; its conditional writes read and write the item
in two steps. One thread at a time, neither matters. With Lambda's concurrent SQS batches offline
(sqs_event_source), both do: every trigger batch writes the bucket's one counter item.

`transaction_conflicts()` patches moto's backend for the block (nested blocks share one installation):

- each item request (GetItem, PutItem, UpdateItem, DeleteItem, TransactWriteItems) runs under one lock,
  so it is atomic, as DynamoDB's are;
- a transaction is in progress while it runs: a transaction that arrives meanwhile and touches one of
  its items is cancelled, a single write of one of its items refused, as above (one that arrives while
  another waits for its turn at the lock is not: on DynamoDB they would run side by side). `refused()`
  counts both since the process began.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from moto.dynamodb.exceptions import DynamodbException, TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend

ItemKey = tuple[str, str, str, str]  # account, region, table, key as JSON
CONFLICT_MESSAGE = "Transaction is ongoing for the item"
_SINGLE_WRITES = ("put_item", "update_item", "delete_item")


class TransactionConflictException(DynamodbException):
    """DynamoDB's answer to a single write of an item that a transaction in progress is writing."""

    def __init__(self) -> None:
        super().__init__("com.amazonaws.dynamodb.v20120810#TransactionConflictException", CONFLICT_MESSAGE)


class _Seam:
    """The transactions in progress, the request lock, and the count of refused requests."""

    def __init__(self) -> None:
        self.request_lock = threading.RLock()  # one item request at a time (re-entered by a transaction)
        self.registry_lock = threading.Lock()
        self.in_progress: Counter[ItemKey] = Counter()
        self.refused = 0
        self.installs = 0
        self.originals: dict[str, Callable[..., Any]] = {}
        self.thread = threading.local()  # .in_transaction: the transaction's own item calls pass

    def in_transaction(self) -> bool:
        return bool(getattr(self.thread, "in_transaction", False))


_SEAM = _Seam()


def refused() -> int:
    """Transactions cancelled and single writes refused for a conflict so far (in this process)."""
    return _SEAM.refused


def _item_key(backend: DynamoDBBackend, table_name: str, key: dict[str, Any]) -> ItemKey:
    return (backend.account_id, backend.region_name, table_name, json.dumps(key, sort_keys=True))


def _key_of_put(backend: DynamoDBBackend, table_name: str, item: dict[str, Any]) -> ItemKey | None:
    """The key of the item a put writes; None when moto will refuse the put anyway (no such table…)."""
    try:
        table = backend.get_table(table_name)
        key = {table.hash_key_attr: item[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = item[table.range_key_attr]
    except Exception:  # moto raises the proper error for this request itself
        return None
    return _item_key(backend, table_name, key)


def _transaction_keys(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[ItemKey | None]:
    keys: list[ItemKey | None] = []
    for action in transact_items:
        kind, operation = next(iter(action.items()))
        table_name = str(operation.get("TableName", ""))
        if kind == "Put":
            keys.append(_key_of_put(backend, table_name, operation.get("Item") or {}))
        else:
            keys.append(_item_key(backend, table_name, operation["Key"]) if "Key" in operation else None)
    return keys


def _transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
    original = _SEAM.originals["transact_write_items"]
    keys = _transaction_keys(backend, transact_items)
    mine = [key for key in keys if key is not None]
    _refuse_if_in_progress(keys, lambda busy: TransactionCanceledException(_reasons(busy)))
    with _SEAM.request_lock:
        with _SEAM.registry_lock:
            _SEAM.in_progress.update(mine)
        _SEAM.thread.in_transaction = True
        try:
            return original(backend, transact_items)
        finally:
            _SEAM.thread.in_transaction = False
            with _SEAM.registry_lock:
                _SEAM.in_progress.subtract(mine)
                _SEAM.in_progress += Counter()  # drops the keys no transaction holds any more


def _reasons(busy: list[bool]) -> list[tuple[str | None, str | None, None]]:
    """CancellationReasons as moto's exception takes them: TransactionConflict where an item was busy."""
    return [("TransactionConflict", CONFLICT_MESSAGE, None) if hit else (None, None, None) for hit in busy]


def _refuse_if_in_progress(keys: list[ItemKey | None], refusal: Callable[[list[bool]], Exception]) -> None:
    """Raise refusal(which keys are busy) when a transaction in progress writes one of these items."""
    with _SEAM.registry_lock:
        busy = [key is not None and _SEAM.in_progress[key] > 0 for key in keys]
        if any(busy):
            _SEAM.refused += 1
            raise refusal(busy)


def _single_write(name: str) -> Callable[..., Any]:
    """PutItem/UpdateItem/DeleteItem: refused while a transaction writes the item, else atomic."""

    def write(
        backend: DynamoDBBackend, table_name: str, key_or_item: dict[str, Any], *args: Any, **kw: Any
    ) -> Any:
        if not _SEAM.in_transaction():
            key = (
                _key_of_put(backend, table_name, key_or_item)
                if name == "put_item"
                else _item_key(backend, table_name, key_or_item)
            )
            _refuse_if_in_progress([key], lambda busy: TransactionConflictException())
        with _SEAM.request_lock:
            return _SEAM.originals[name](backend, table_name, key_or_item, *args, **kw)

    return functools.update_wrapper(write, _SEAM.originals[name])


def _get_item(backend: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
    """GetItem never sees a transaction half-applied (moto applies its actions one by one)."""
    with _SEAM.request_lock:
        return _SEAM.originals["get_item"](backend, *args, **kwargs)


@contextlib.contextmanager
def transaction_conflicts() -> Iterator[None]:
    """moto's DynamoDB with atomic item requests and DynamoDB's transaction conflicts, for the block."""
    with _SEAM.registry_lock:
        if _SEAM.installs == 0:
            names = ("transact_write_items", "get_item", *_SINGLE_WRITES)
            _SEAM.originals = {name: getattr(DynamoDBBackend, name) for name in names}
            DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
            DynamoDBBackend.get_item = _get_item  # type: ignore[method-assign]
            for name in _SINGLE_WRITES:
                setattr(DynamoDBBackend, name, _single_write(name))
        _SEAM.installs += 1
    try:
        yield
    finally:
        with _SEAM.registry_lock:
            _SEAM.installs -= 1
            if _SEAM.installs == 0:
                for name, original in _SEAM.originals.items():
                    setattr(DynamoDBBackend, name, original)
