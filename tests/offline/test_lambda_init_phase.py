"""The Lambdas' module-level state (Powertools' Logger service, Metrics namespace) is built from the
function's environment, as in Lambda's init phase: `InProcessLambdas.installed` imports each handler's
module under its function's variables, so nothing the offline runner imports may build it first, outside
any function's environment (a second `facetrain run --state` failed so: no metric namespace)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_offline_command_imports_no_lambda_module_that_builds_the_logger() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    check = (
        "import sys, facetrain_offline.cli, facetrain_offline.runner, facetrain_offline.run_arguments;"
        "built = [m for m in ('facetrain_lambdas.observability',) if m in sys.modules];"
        "print(built); sys.exit(1 if built else 0)"
    )
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
