"""The Powertools Logger, Tracer and Metrics shared by the handlers.

Service name, namespace and log level come from POWERTOOLS_* environment variables set in template.yaml.
The state machine passes the execution name as `execution` in every payload: it is the correlation id.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

CORRELATION_ID_PATH = "execution"

logger = Logger()
tracer = Tracer()
metrics = Metrics()
