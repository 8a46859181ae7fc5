"""A folder that really cannot be listed, for the tests of what the job and the upload do with one.

`chmod 000` is enough for an ordinary user; root (as in these test containers) lists it anyway through
the capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so for root both are lowered in the effective
set of the calling thread (capset(2)) while the block runs and raised again after: the kernel itself then
refuses the listing (EACCES), as it would for any user.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

_CAPABILITY_VERSION_3 = 0x20080522  # linux/capability.h: two 32-bit words per set
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capabilities(call: str, data: ctypes.Array[_Data]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    header = _Header(_CAPABILITY_VERSION_3, 0)  # pid 0: this thread
    if getattr(libc, call)(ctypes.byref(header), data) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{call}: {os.strerror(error)}")


@contextlib.contextmanager
def _without_dac_override() -> Iterator[None]:
    data = (_Data * 2)()
    _capabilities("capget", data)
    saved = data[0].effective
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    _capabilities("capset", data)
    try:
        yield
    finally:
        data[0].effective = saved
        _capabilities("capset", data)


@contextlib.contextmanager
def listing_refused(*folders: Path) -> Iterator[None]:
    """While the block runs, listing any of `folders` fails with EACCES (mode 000), as reading any entry
    inside them does; their modes are restored after."""
    modes = [folder.stat().st_mode for folder in folders]
    for folder in folders:
        folder.chmod(0)
    try:
        with _without_dac_override() if os.geteuid() == 0 else contextlib.nullcontext():
            for folder in folders:
                try:
                    os.listdir(folder)
                except PermissionError:
                    continue
                raise AssertionError(f"{folder} can still be listed: the test cannot make it unlistable")
            yield
    finally:
        for folder, mode in zip(folders, modes, strict=True):
            folder.chmod(mode)
