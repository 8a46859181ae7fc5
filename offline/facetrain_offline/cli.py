"""The `facetrain` command: `facetrain run IMAGES_DIR --out OUT_DIR …` runs the whole workflow offline;
`facetrain identify PHOTO… --results DIR` identifies people in photos with published results;
`facetrain launch --bucket B --role ARN …` starts the training job with the SageMaker SDK (launch.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from facetrain.contract.counting import counted

from . import launch

if TYPE_CHECKING:
    from .run_options import RunOptions

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C

RUN_HELP = """\
Run the whole retraining workflow on this machine, with no AWS account, no Docker and no network:
a local AWS (moto) is stood up from template.yaml, IMAGES_DIR is uploaded to the local bucket's images
prefix, the real state machine runs the real Lambda handlers in-process, and the training job runs the
real container entry point (`train`) as a local process (with --image: inside that container image,
run by podman as SageMaker runs it). The published results (the files that land at
the results prefix) and run.json (status, counts, failure reason, state-by-state history) are written to
OUT_DIR; the Lambdas' logs go to OUT_DIR/lambdas.log. Exit code 0 only when the run succeeded.

Ctrl-C (or SIGTERM) before the execution publishes stops it as the console's "Stop execution" does;
the stack then stops the training job (SIGTERM, as SageMaker does), the command waits until nothing can
change the bucket (a second Ctrl-C ends the wait at once), writes run.json with status ABORTED, publishes
nothing, leaves --state as it was and exits 130. An execution already publishing is let finish and
reported as finished; once the executions have ended, Ctrl-C waits for the results and the state to be
saved (seconds). The state's save is crash-safe.
"""

IDENTIFY_HELP = """\
Identify the people in each PHOTO with published results (DIR: the folder holding rules.py,
final_mean_embeddings.csv and saved_embeddings.pkl, e.g. the OUT_DIR of `facetrain run`). Faces are
detected and embedded by the training job's own code, with the settings and weights the results were made
with (weights=none results: the same seed, and a NOT FOR PRODUCTION warning). Runs on CPU, without AWS.
Every face found is examined (--largest-face-only: the largest face of each photo alone).

Prints one JSON object per photo: photo, faces_found (faces detected), faces_answered, identities (those
accepted, in face order), faces: one object per face, left to right (by the box's left edge, then its
top), with box ([x1, y1, x2, y2] in the photo's pixels), probability, identity (the nearest enrolled
identity when its distance is within rules.py's accept_threshold, else null), distance, accepted, margin
(how much farther the second nearest identity is) and candidates (the nearest identities). A face that is
not answered (smaller than min_face_size, too small to align) has identity null, reason and error; a
photo without a usable face has reason and error (and faces [] when no face was found).
Exit codes: 0 every photo examined; 1 some photo unreadable (its line says why); 2 bad usage or results.
The same answers from Python, for images in memory: facetrain.results.Results (see the README).
"""


FORGET_HELP = """\
Forget people: erase them from everything the offline bucket (--state) and OUT_DIR keep, as the deployed
stack does for the console input {"forget": [NAME, ...]}: the same state machine deletes every version of
their photos, republishes the enrollment without them (the published run's settings, the others'
embeddings reused), then scans every version of every stored result and rewrites it without them or
deletes it, and writes an erasure receipt (salted hashes, no names) under the erasure records prefix.
OUT_DIR is then scanned the same way (its copies of earlier runs included). A NAME is a person's folder
name. A name neither enrolled nor with photos is said to be not enrolled; forgetting everyone is refused.
Delete their folder from your own photos folder too: the next `facetrain run` would upload it again.
Without --state (runs made without it kept no bucket), only OUT_DIR is scanned and cleaned.
Exit code 0 only when the forget succeeded.
"""


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: an option it does not know is refused with its own usage (`facetrain run
    --typo` shows run's options). argparse hands a subcommand's unknown arguments up to the top-level
    parser, whose usage lists only the commands."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, unknown = super().parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed, unknown


def facetrain_version() -> str:
    """The installed distribution's version (pyproject.toml), or why there is none."""
    try:
        return version("facetrain")
    except PackageNotFoundError:
        return "unknown (facetrain is not installed: pip install -e . in the checkout)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facetrain", description="facetrain: face-enrollment retraining.")
    parser.add_argument("--version", action="version", version=f"facetrain {facetrain_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    run = commands.add_parser(
        "run",
        help="run the retraining workflow offline",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("images_dir", metavar="IMAGES_DIR", type=Path, help="folder of <person>/<photo> files")
    run.add_argument(
        "--out",
        dest="out_dir",
        metavar="OUT_DIR",
        type=Path,
        required=True,
        help="where the published results and run.json are written",
    )
    run.add_argument(
        "--hyperparameter",
        "-p",
        dest="hyperparameters",
        metavar="KEY=VALUE",
        type=_key_value,
        action="append",
        default=[],
        help="a training setting, repeatable (e.g. -p weights=none -p batch_size=16); without `weights` "
        "or `embedder`: facenet with vggface2 when its file is where the job runs (this machine, or the "
        "--image), else embedder=dlib-resnet, else (dlib not installed) weights=none, said loudly",
    )
    run.add_argument(
        "--state",
        dest="state_dir",
        metavar="STATE_DIR",
        type=Path,
        help="keep the local bucket's contents here between runs (a later run sees the "
        "earlier published results); without it, state is temporary",
    )
    run.add_argument("--instance-type", help="training instance type recorded for the job (default: stack's)")
    run.add_argument("--instance-count", type=int, help="number of training instances (default: stack's)")
    run.add_argument("--run-id", help="id of the run (default: the execution name)")
    run.add_argument(
        "--trigger",
        choices=["console", "upload"],
        default="console",
        help="console (default): upload the folder, then start one execution with the console input; "
        "upload: upload one object at a time and let the template's upload trigger (EventBridge rule → "
        "SQS → trigger Lambda) start what it starts; -p settings then go to a file under the config prefix",
    )
    run.add_argument(
        "--settle-seconds", type=int, default=2, help="with --trigger upload: quiet time before training (2)"
    )
    run.add_argument(
        "--force", action="store_true", help="retrain even when nothing changed since the published run"
    )
    run.add_argument(
        "--min-accuracy",
        type=float,
        metavar="X",
        help="quality gate: publish only if the leave-one-out identification accuracy is at least X "
        "(0-1); a run below it fails with QualityGateFailed and changes nothing published",
    )
    run.add_argument(
        "--max-fpir",
        type=float,
        metavar="X",
        help="quality gate: publish only if the data vouch for a false-positive identification rate of at "
        "most X (0-1] at the published threshold: the FPIR's 95%% upper bound (no false positive in 72 "
        "non-mated searches still bounds it at about 5%%); otherwise QualityGateFailed, nothing published "
        "changes",
    )
    run.add_argument(
        "--template", type=Path, help="SAM template to deploy (default: the project's template.yaml)"
    )
    run.add_argument("--poll-seconds", type=int, default=1, help="first wait between training-job polls (1)")
    run.add_argument(
        "--image",
        metavar="IMAGE",
        help="run the training job in this local container image with podman (e.g. "
        "localhost/facetrain:local, which make image-local builds): `IMAGE train` per host, /opt/ml "
        "mounted, no network",
    )
    _add_identify(commands)
    _add_forget(commands)
    _add_runs(commands)
    launch.add_parser(commands, _key_value)
    return parser


def _add_identify(commands: argparse._SubParsersAction) -> None:
    identify = commands.add_parser(
        "identify",
        help="identify people in photos with published results",
        description=IDENTIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    identify.add_argument("photos", metavar="PHOTO", type=Path, nargs="+", help="photo files")
    identify.add_argument(
        "--results",
        dest="results_dir",
        metavar="DIR",
        type=Path,
        required=True,
        help="folder of published results (rules.py, final_mean_embeddings.csv, saved_embeddings.pkl)",
    )
    identify.add_argument("--top", type=int, default=3, help="candidates listed per face (3)")
    identify.add_argument(
        "--largest-face-only",
        action="store_true",
        help="examine only the largest face of each photo (the face face_selection=largest enrols)",
    )
    identify.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="(auto)")
    identify.add_argument(
        "--weights-dir",
        type=Path,
        help="folder holding the weights file (as the job's weights channel); vggface2 is also looked "
        "up in $TORCH_HOME/checkpoints",
    )


def _add_forget(commands: argparse._SubParsersAction) -> None:
    forget = commands.add_parser(
        "forget",
        help="erase people from the offline bucket and the results",
        description=FORGET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    forget.add_argument("names", metavar="NAME", nargs="+", help="a person's folder name")
    forget.add_argument(
        "--state",
        dest="state_dir",
        metavar="STATE_DIR",
        type=Path,
        help="the --state folder of the runs that enrolled them; without it (runs made without --state "
        "kept no bucket) only OUT_DIR is scanned",
    )
    forget.add_argument(
        "--out",
        dest="out_dir",
        metavar="OUT_DIR",
        type=Path,
        required=True,
        help="the --out folder of those runs: the enrollment without them and run.json go here",
    )
    forget.add_argument(
        "--template", type=Path, help="SAM template to deploy (default: the project's template.yaml)"
    )
    forget.add_argument(
        "--poll-seconds", type=int, default=1, help="first wait between training-job polls (1)"
    )
    forget.add_argument(
        "--image", metavar="IMAGE", help="run the retrain's job in this local container image"
    )


RUNS_HELP = """\
List the runs an offline bucket (--state) holds, oldest first, one line each: run id, when it was
validated (UTC; a refused run: when its problems.json was written), status, identities (enrolled, else the
folders validate counted), photos (accepted/total, else the photos validate counted), the accept threshold
and the leave-one-out identification accuracy; then which run is published (latest.json). No identity
name is printed.

Status: current (the published run); published (published once, replaced since); no change (nothing
changed since the published run: nothing trained); refused (validate refused it: every problem is in
runs/<run id>/problems.json under the results prefix); failed (quality gate) (below the run's quality
gate: runs/<run id>/quality_gate.json); failed (the job or a later step failed). On AWS the same folders
are under s3://BUCKET/results/runs/ (docs/workflow.md, "Where results appear").
"""


def _add_runs(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser(
        "runs",
        help="list the past runs of an offline bucket and which one is published",
        description=RUNS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    runs.add_argument(
        "--state",
        dest="state_dir",
        metavar="STATE_DIR",
        type=Path,
        required=True,
        help="the --state folder of `facetrain run`",
    )
    runs.add_argument(
        "--template", type=Path, help="SAM template (its ResultsPrefix; default: the project's template.yaml)"
    )


def _runs(args: argparse.Namespace) -> int:
    """`facetrain runs`: run_history.list_runs, under the template's results prefix."""
    from .local_aws import DEFAULT_TEMPLATE  # lazy: moto and boto3 are slow
    from .run_history import list_runs
    from .sam import load_sam

    template = args.template or DEFAULT_TEMPLATE
    results_prefix = load_sam(template)["Parameters"]["ResultsPrefix"]["Default"]
    code, lines = list_runs(args.state_dir, results_prefix)
    for line in lines:
        print(line if code == 0 else f"facetrain runs: {line}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "launch":
        return launch.main(args)
    if args.command == "runs":
        return _runs(args)
    if args.command == "identify":
        if args.top < 1:
            print("facetrain identify: --top must be at least 1", file=sys.stderr)
            return 2
        from facetrain.identify import run_identify  # lazy: torch is slow to import

        return run_identify(
            args.photos,
            args.results_dir,
            args.top,
            args.device,
            args.weights_dir,
            largest_only=args.largest_face_only,
        )
    from .local_aws import DEFAULT_TEMPLATE  # lazy: moto and boto3 are slow
    from .photo_upload import PhotoFolderError, scan_photo_folder
    from .run_arguments import create_output_folders, option_problems
    from .run_options import RunOptions

    if args.command == "forget":
        return _forget(args)
    for option, value in (("--min-accuracy", args.min_accuracy), ("--max-fpir", args.max_fpir)):
        if value is not None and args.trigger == "upload":
            print(
                f"facetrain run: {option} is part of the console input; use it without --trigger upload",
                file=sys.stderr,
            )
            return 2
    if not args.images_dir.is_dir():
        print(f"facetrain run: {args.images_dir} is not a folder of <person>/<photo> files", file=sys.stderr)
        return 2
    options = RunOptions(
        images_dir=args.images_dir,
        out_dir=args.out_dir,
        hyperparameters=dict(args.hyperparameters),
        state_dir=args.state_dir,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        template=args.template or DEFAULT_TEMPLATE,
        poll_seconds=args.poll_seconds,
        run_id=args.run_id,
        trigger=args.trigger,
        settle_seconds=args.settle_seconds,
        force=args.force,
        min_accuracy=args.min_accuracy,
        max_fpir=args.max_fpir,
        image=args.image,
    )
    screen = sys.stdout  # bound now: in-process Lambdas redirect sys.stdout to their log while they run

    def say(line: str) -> None:
        print(line, file=screen, flush=True)

    try:  # before anything starts: options, the photos' names, the output folders
        problems = option_problems(options)
        skipped = [] if problems else scan_photo_folder(options.images_dir).skipped
        problems = problems or create_output_folders(options)
    except PhotoFolderError as exc:
        problems, skipped = [str(exc)], []
    for problem in problems:
        print(f"facetrain run: {problem}", file=sys.stderr)
    if problems:
        return 2
    for line in skipped:
        say(f"skip   {line}")
    status = _run_offline("run", options, say)
    return status if isinstance(status, int) else _exit_code(args.out_dir, status, say)


def _run_offline(command: str, options: RunOptions, say: Callable[[str], None]) -> str | int:
    """runner.run: the run's status, or the exit code when it could not start (2) or was interrupted
    before or after the local AWS was up (130), said on stderr."""
    from .bucket_state import StateInUse, StateUnreadable  # lazy: moto and boto3 are slow
    from .host_containers import ContainerEngineError
    from .runner import run

    try:
        return run(options, say=say).status
    except (StateInUse, StateUnreadable, ContainerEngineError) as exc:
        print(f"facetrain {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in the moments before the local AWS is up or after it is down
        print(f"facetrain {command}: interrupted; no run.json written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_code(out_dir: Path, status: str, say: Callable[[str], None]) -> int:
    say(f"run.json: {out_dir / 'run.json'}")
    if status == "ABORTED":
        return EXIT_INTERRUPTED
    return 0 if status == "SUCCEEDED" else 1


def _forget(args: argparse.Namespace) -> int:
    """`facetrain forget`: the console input {"forget": NAMES} through the offline stack."""
    from .bucket_state import SAVED  # lazy: moto and boto3 are slow
    from .local_aws import DEFAULT_TEMPLATE
    from .run_arguments import create_output_folders, option_problems
    from .run_options import RunOptions

    options = RunOptions(
        images_dir=None,
        out_dir=args.out_dir,
        state_dir=args.state_dir,
        template=args.template or DEFAULT_TEMPLATE,
        poll_seconds=args.poll_seconds,
        image=args.image,
        forget=list(dict.fromkeys(args.names)),
    )
    if args.state_dir is None:
        return _forget_in_folder(args.out_dir, options.forget, options.template)
    problems = option_problems(options)
    if not problems and not (args.state_dir / SAVED).is_dir():
        problems = [
            f"--state {args.state_dir} holds no saved bucket ({args.state_dir / SAVED} is missing): give the "
            "--state folder of the runs that enrolled them"
        ]
    problems = problems or create_output_folders(options)
    for problem in problems:
        print(f"facetrain forget: {problem}", file=sys.stderr)
    if problems:
        return 2
    screen = sys.stdout

    def say(line: str) -> None:
        print(line, file=screen, flush=True)

    status = _run_offline("forget", options, say)
    if isinstance(status, int):
        return status
    if status == "SUCCEEDED":
        say(
            "forget done. Delete their folders from your own photos folder too, or the next `facetrain run` "
            "uploads them again."
        )
    return _exit_code(args.out_dir, status, say)


def _forget_in_folder(out_dir: Path, names: list[str], template: Path) -> int:
    """`facetrain forget` without --state: the runs kept no bucket, so OUT_DIR is all there is to scan."""
    from .folder_scrub import scrub_folder
    from .sam import load_sam

    if not out_dir.is_dir():
        print(
            f"facetrain forget: --out {out_dir} is not a folder: give the --out of the runs", file=sys.stderr
        )
        return 2
    images_prefix = load_sam(template)["Parameters"]["ImagesPrefix"]["Default"]
    scrubbed = scrub_folder(out_dir, names, images_prefix)
    print(
        f"forget {out_dir} (no --state: the runs kept no bucket): {counted(scrubbed.rewritten, 'file')} "
        f"rewritten without them, {scrubbed.deleted} deleted. Delete their folders from your own photos "
        "folder too."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
