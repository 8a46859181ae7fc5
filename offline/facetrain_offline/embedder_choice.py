"""Which embedder `facetrain run` uses when none was asked for: facenet where the vggface2 weights are
where the job runs (this machine, or the --image), else dlib's ResNet (its model ships in a package), else
random weights, said loudly."""

from __future__ import annotations

from collections.abc import Callable

from facetrain.inference.model_files import cached_weights, dlib_available

from .host_containers import ContainerEngine


def default_embedder(
    hyperparameters: dict[str, str], say: Callable[[str], None], image: ContainerEngine | None = None
) -> dict[str, str]:
    """Without vggface2 weights where the job runs (this machine; with `image`, that image),
    embedder=dlib-resnet (its model ships in a package), said in one line; unless the embedder or weights
    were chosen. weights=none stays for tests."""
    if "weights" in hyperparameters or "embedder" in hyperparameters:
        return hyperparameters
    if image is not None:
        if image.has_vggface2():
            return hyperparameters
        say(
            f"note   embedder=dlib-resnet, because the image {image.image} was built without the vggface2 "
            "weights; to use embedder=facenet, build it with them (see the README's training image section)"
        )
        return {**hyperparameters, "embedder": "dlib-resnet"}
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
