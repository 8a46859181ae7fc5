"""Lambda handlers of the facetrain retraining workflow (validate, start, poll, publish, cleanup).

Each handler module is thin glue (Powertools logging/tracing/metrics, event parsing, environment) over
plain typed functions that take boto3 clients as arguments. No torch, no SageMaker SDK.
"""
