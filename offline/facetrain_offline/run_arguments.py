"""`facetrain run`'s options checked before anything starts: each problem a sentence naming the option,
what is wrong and the fix (cli.py prints them and exits 2).

The rules are not restated here but read from where they are defined: the console input's field ranges
from the validate Lambda's model (ConsoleInput), the run id's form from run_request.RUN_ID, the waits' and
the instance type's limits from the template's parameter declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facetrain_lambdas.run_request import RUN_ID, ConsoleInput
from pydantic import ValidationError

from .parameter_checks import value_problems
from .run_options import RunOptions, console_input
from .sam import TemplateError, load_sam

# Console input field (pydantic's error location) → the option that sets it.
_OPTION_OF_FIELD = {
    ("instance_count",): "--instance-count",
    ("quality_gate", "min_identification_accuracy"): "--min-accuracy",
    ("quality_gate", "max_fpir"): "--max-fpir",
}
_FOLDER_ROLES = {  # what befalls a folder inside another
    "IMAGES_DIR": "whose every file is uploaded as a photo (this run's own files would be too)",
    "--out": "where the run writes its results, run.json and lambdas.log over what is there",
    "--state": "whose contents the state save replaces",
}


def _bounds(schema: Mapping[str, Any]) -> str:
    """The range a JSON schema allows, in words (e.g. `1 to 20`, `above 0, at most 1`)."""
    low = (
        f"{schema['minimum']}"
        if "minimum" in schema
        else f"above {schema['exclusiveMinimum']}"
        if "exclusiveMinimum" in schema
        else None
    )
    high = (
        f"{schema['maximum']}"
        if "maximum" in schema
        else f"below {schema['exclusiveMaximum']}"
        if "exclusiveMaximum" in schema
        else None
    )
    if low and high:
        return f"{low} to {high}" if not low.startswith("above") else f"{low}, at most {high}"
    return low or high or "any value"


def _field_schema(location: tuple[Any, ...]) -> Mapping[str, Any]:
    """The JSON schema of one console input field (the non-null branch of an optional one)."""
    schema = ConsoleInput.model_json_schema()
    properties: Mapping[str, Any] = schema["properties"]
    node: Mapping[str, Any] = {}
    for part in location:
        node = properties[part]
        node = next((branch for branch in node.get("anyOf", [node]) if branch.get("type") != "null"), node)
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        properties = node.get("properties", {})
    return node


def console_input_problems(options: RunOptions) -> list[str]:
    """What the validate Lambda would refuse in the console input these options make (settings aside:
    -p values are checked by validate and the job, which name them), and a --run-id it would not take."""
    problems: list[str] = []
    try:
        ConsoleInput.model_validate(console_input(options, {}))
    except ValidationError as exc:
        for error in exc.errors():
            location = tuple(error["loc"])
            option = _OPTION_OF_FIELD.get(location, ".".join(str(part) for part in location))
            problems.append(
                f"{option} {error['input']!r} is out of range: give {_bounds(_field_schema(location))}"
            )
    if options.run_id is not None and not RUN_ID.fullmatch(options.run_id):
        problems.append(
            f"--run-id {options.run_id!r} cannot name a run: use 1-80 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (or leave --run-id out: the execution name is used)"
        )
    return problems


def template_problems(options: RunOptions) -> list[str]:
    """--poll-seconds, --settle-seconds and --instance-type against the template's declarations of the
    parameters they set (offline, the first poll may be shorter than PollIntervalSeconds' MinValue, as
    parameter_checks.OFFLINE_SHORT_WAITS allows, but at least 1 s: a wait of 0 s never doubles)."""
    try:
        declared = load_sam(options.template).get("Parameters", {})
    except (OSError, UnicodeDecodeError, TemplateError) as exc:
        return [f"--template {options.template}: cannot be read as a SAM template ({exc})"]
    problems: list[str] = []
    longest_poll = declared.get("PollIntervalSeconds", {}).get("MaxValue", 3600)
    if not 1 <= options.poll_seconds <= float(longest_poll):
        problems.append(f"--poll-seconds {options.poll_seconds} is out of range: give 1 to {longest_poll}")
    settle = declared.get("UploadSettleSeconds")
    if settle and value_problems("UploadSettleSeconds", settle, str(options.settle_seconds)):
        problems.append(
            f"--settle-seconds {options.settle_seconds} is out of range: give "
            f"{settle.get('MinValue', 'any')} to {settle.get('MaxValue', 'any')}"
        )
    instance_type = declared.get("TrainingInstanceType")
    if options.instance_type is not None and instance_type:
        for problem in value_problems("TrainingInstanceType", instance_type, options.instance_type):
            problems.append(f"--instance-type: {problem}; give one such as ml.g4dn.xlarge")
    return problems


def folder_problems(options: RunOptions) -> list[str]:
    """IMAGES_DIR, --out and --state must not hold one another: the run writes into --out and --state,
    so a folder inside IMAGES_DIR would be uploaded as photos by the next run (this run's lambdas.log
    too), and photos inside --out or --state would be overwritten or deleted by the results or the
    state save. Compared after links are resolved."""
    folders = {
        **({"IMAGES_DIR": options.images_dir} if options.images_dir is not None else {}),
        "--out": options.out_dir,
        **({"--state": options.state_dir} if options.state_dir is not None else {}),
    }
    resolved = {name: path.resolve() for name, path in folders.items()}
    problems: list[str] = []
    names = list(folders)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = resolved[first], resolved[second]
            if a == b:
                problems.append(
                    f"{first} and {second} are the same folder ({a}): "
                    f"give {second} a folder of its own, outside {first}"
                )
            elif b.is_relative_to(a) or a.is_relative_to(b):
                inner, outer = (second, first) if b.is_relative_to(a) else (first, second)
                problems.append(
                    f"{inner} ({resolved[inner]}) is inside {outer} ({resolved[outer]}), "
                    f"{_FOLDER_ROLES[outer]}: give {inner} a folder outside {outer}"
                )
    return problems


def option_problems(options: RunOptions) -> list[str]:
    """Every problem of the options, none when they can be run (the folders are not created here)."""
    return [*folder_problems(options), *console_input_problems(options), *template_problems(options)]


def _not_a_folder(option: str, folder: Path) -> str | None:
    """Why `folder` cannot become a folder without touching anything: it, or the nearest part of its path
    that exists, is not a folder."""
    existing = next((path for path in (folder, *folder.parents) if path.exists() or path.is_symlink()), None)
    if existing is None or existing.is_dir():
        return None
    if existing != folder:
        what = f"cannot be created: {existing} is not a folder"
    else:
        what = "is a file, not a folder" if existing.is_file() else "exists and is not a folder"
    return f"{option} {folder} {what}: give {option} a folder (it is created if missing)"


def create_output_folders(options: RunOptions) -> list[str]:
    """Create --out and --state (when missing), or a problem for each that cannot be a folder (an existing
    file, a file on its path, no permission); none is created unless both can be."""
    folders = [("--out", options.out_dir), ("--state", options.state_dir)]
    wanted = [(option, folder) for option, folder in folders if folder is not None]
    problems = [problem for option, folder in wanted if (problem := _not_a_folder(option, folder))]
    for option, folder in [] if problems else wanted:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"{option} {folder} cannot be created ({exc.strerror}): give {option} a folder")
    return problems
