"""The local training backend tells the job the truth about its machine: resourceconfig.json's
current_instance_type is "local" (SageMaker local mode's), whatever GPU type the job asked for."""

from __future__ import annotations

import json
from types import SimpleNamespace

from facetrain_offline.host_files import lay_out_host


def test_a_local_host_says_local_not_the_gpu_type_the_job_asked_for(tmp_path) -> None:
    job = SimpleNamespace(  # only what lay_out_host reads of moto's FakeTrainingJob, and the asked-for type
        input_data_config=[],
        hyper_parameters={"weights": "none"},
        resource_config={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
    )
    base = lay_out_host(job, tmp_path / "algo-1", s3=None, hosts=["algo-1"], host="algo-1")  # type: ignore[arg-type]
    resources = json.loads((base / "input" / "config" / "resourceconfig.json").read_text())
    assert resources["current_instance_type"] == "local"
    assert resources["current_host"] == "algo-1"
