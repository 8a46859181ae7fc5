"""Names the handler tests share (importable, unlike conftest.py)."""

BUCKET = "facetrain-data-test"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/facetrain:test"
ROLE = "arn:aws:iam::123456789012:role/facetrain-sagemaker"
