"""The offline stack refuses template parameters as CloudFormation would, counted right (issue 27): one
parameter in the singular, several in the plural, each named."""

from __future__ import annotations

from pathlib import Path

import pytest
from facetrain_offline.sam import TemplateError
from facetrain_offline.stack import deploy

TEMPLATE = "Parameters:\n  A:\n    Type: String\n  B:\n    Type: String\nResources: {}\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Nope": "1"}, "1 unknown template parameter: Nope"),
        ({"Nope": "1", "Zed": "2"}, "2 unknown template parameters: Nope, Zed"),
        ({"A": "x"}, "1 template parameter without a value: B"),
        ({}, "2 template parameters without a value: A, B"),
    ],
)
def test_parameters_are_refused_with_their_count_and_names(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)
    with pytest.raises(TemplateError) as refused:
        deploy(template, overrides)  # refused before anything is packaged or created
    assert str(refused.value) == message
