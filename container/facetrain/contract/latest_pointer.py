"""latest.json, the pointer publish writes last at the results prefix, naming the published run and its
own files under runs/<run id>/: its name, format and versions, in one place for its writer and model
(facetrain_lambdas.published) and the readers that may not import the Lambdas (facetrain.results_s3).
Standard-library only, like the rest of facetrain.contract."""

from __future__ import annotations

LATEST_JSON = "latest.json"
LATEST_FORMAT = "facetrain.latest"
LATEST_VERSION = 2  # the version written
# The versions read: 1 differs from 2 only in the run fingerprint's field name (dataset_fingerprint),
# which published.upgraded_latest renames.
LATEST_VERSIONS_READ = (1, 2)
