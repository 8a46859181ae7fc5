"""The check both device-decision tables make (tests/container/test_gpu_check.py, test_onnx_devices.py)."""

from __future__ import annotations

from facetrain.accelerator import DeviceChoice


def assert_choice(choice: DeviceChoice, device: str, warned: str | None) -> None:
    """`choice` runs on `device`; with `warned`, its warning says it, else it carries no warning at all."""
    assert choice.device == device
    if warned is None:
        assert choice == DeviceChoice(device)
    else:
        assert choice.warning is not None and warned in choice.warning, choice.warning
