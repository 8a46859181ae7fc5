"""The environment a test process needs before any Lambda handler module is imported: Powertools reads
its service and metrics namespace when its objects are made (at import), and boto3 its credentials and
region. Values already set win (`setdefault`), so a run under real settings is not overridden."""

from __future__ import annotations

import os


def set_default_handler_env(region: str = "us-east-1") -> None:
    """Fake AWS credentials, the region, and the Powertools names the stack gives its functions."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "POWERTOOLS_SERVICE_NAME": "facetrain",
        "POWERTOOLS_METRICS_NAMESPACE": "facetrain",
    }.items():
        os.environ.setdefault(name, value)
