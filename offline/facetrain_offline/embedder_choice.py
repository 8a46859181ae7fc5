"""Which embedder `facetrain run` uses when none was asked for: facenet where the vggface2 weights are on
this machine, else dlib's ResNet (its model ships in a package), else random weights, said loudly."""

from __future__ import annotations

from collections.abc import Callable

from facetrain.model_files import cached_weights, dlib_available


def default_embedder(hyperparameters: dict[str, str], say: Callable[[str], None]) -> dict[str, str]:
    """Without vggface2 weights on this machine, embedder=dlib-resnet (its model ships in a package),
    said in one line; unless the embedder or weights were chosen. weights=none stays for tests."""
    if "weights" in hyperparameters or "embedder" in hyperparameters:
        return hyperparameters
    path = cached_weights("vggface2")
    if path.is_file():
        return hyperparameters
    if dlib_available():
        say(
            "note   embedder=dlib-resnet (dlib's ResNet, model files from the face_recognition_models "
            f"package), because the vggface2 weights are not at {path}; to use embedder=facenet put "
            "them there or pass -p weights=FILE"
        )
        return {**hyperparameters, "embedder": "dlib-resnet"}
    say(
        "!" * 100 + f"\n! vggface2 weights not found at {path}, and dlib-resnet is not installed (make setup "
        "installs it): this run uses weights=none (RANDOM weights).\n"
        "! The results are NOT FOR PRODUCTION: they recognise no one. Put the weights there or pass "
        "--hyperparameter weights=...\n" + "!" * 100
    )
    return {**hyperparameters, "weights": "none"}
