"""The python3.13 Lambda runtime's start-up, as the real image's /var/runtime/bootstrap.py does it: the
function's code, then the layers, on sys.path, then awslambdaric's loop for the handler in _HANDLER.

Our own file because the real one lives only inside the registry image (aws/aws-lambda-base-images keeps
it in layer tarballs); it follows the documented search order of the Python runtime:
/var/task, /opt/python/lib/python3.13/site-packages, /opt/python, then the runtime's own packages.
"""

from __future__ import annotations

import os
import site
import sys

from awslambdaric.__main__ import main as run_runtime_client

LAYER_SITE_PACKAGES = f"/opt/python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
LAYER_PYTHON = "/opt/python"


def _pythonpath_set() -> bool:
    return "PYTHONPATH" in os.environ


def set_search_path(task_root: str) -> None:
    """Task root first, then the layers (unless PYTHONPATH says otherwise), with their .pth files."""
    if not _pythonpath_set():
        sys.path.insert(0, LAYER_PYTHON)
        sys.path.insert(0, LAYER_SITE_PACKAGES)
    sys.path.insert(0, task_root)
    site.addsitedir(task_root)
    if not _pythonpath_set():
        site.addsitedir(LAYER_SITE_PACKAGES)
        site.addsitedir(LAYER_PYTHON)
        os.environ["PYTHONPATH"] = os.environ["LAMBDA_RUNTIME_DIR"]


def main() -> None:
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    set_search_path(task_root)
    handler = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    if not handler:
        sys.exit("bootstrap: no handler: _HANDLER is empty and none was given as an argument")
    run_runtime_client([sys.argv[0], handler])  # reads AWS_LAMBDA_RUNTIME_API and AWS_EXECUTION_ENV


if __name__ == "__main__":
    main()
