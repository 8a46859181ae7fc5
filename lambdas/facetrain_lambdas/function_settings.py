"""The functions' environment: one pydantic model per function, each field named after what it means and
aliased to the variable template.yaml sets (`Field(validation_alias="DATA_BUCKET")`).

`Model.from_env()` reads os.environ (or a mapping, in tests); an empty variable counts as unset, so the
field's default applies. A missing or malformed variable raises StackConfigurationError naming it: the
stack was deployed wrong, which no retry fixes. `Model.variables()` lists the variables, so the template
test can check every function gets each variable its handler reads.

Kept here rather than taking pydantic-settings: that would add a package to the layer and to every
function for what these lines do (alias → field, validated by the same pydantic), and its extra sources
(.env files, secrets directories) are what a Lambda's environment must not read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from facetrain.contract.documents import field_problems
from pydantic import BaseModel, ConfigDict, ValidationError


class StackConfigurationError(RuntimeError):
    """A function's environment does not fit its settings model: deploy the stack again."""


class FunctionSettings(BaseModel):
    """Base of each function's settings: subclasses declare fields with validation_alias=<VARIABLE>."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> environment variable."""
        return {name: str(field.validation_alias or name) for name, field in cls.model_fields.items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings read from `env` (default: os.environ); StackConfigurationError naming the variable."""
        env = os.environ if env is None else env
        values = {variable: env[variable] for variable in cls.variables().values() if env.get(variable)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise StackConfigurationError(
                f"{cls.__name__}: the function's environment does not fit ({field_problems(exc)}); "
                "template.yaml sets these variables: deploy the stack again"
            ) from None
