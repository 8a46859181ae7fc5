"""Finding, cropping and embedding faces: detection and face selection, the embedders, the runtimes that
run the networks, and the model files.

`faces` (the one detection and face-selection logic: FaceEncoder over a Detector and an Embedder),
`runtimes` (the `runtime` setting: which files are resolved and which encoder is opened), `onnx_runtime`
and `torch_runtime` (MTCNN and InceptionResnetV1 on ONNX Runtime, or on facenet-pytorch itself),
`dlib_embedder` (dlib-resnet), `model_files` (the embedders' trained files), `onnx_files` (where the
ONNX exports are found, and made once where torch is), `export` (facenet-pytorch's networks to ONNX),
`manifest` (each export folder's sha256 record), `onnx_models` (ONNX Runtime sessions, CPU or CUDA),
`mtcnn` and `facenet` (facenet-pytorch's detection glue and crop in numpy), `devices` (cpu or cuda, by
the runtime's facts). Only `export` and `torch_runtime` import torch (import contracts in pyproject.toml).
"""
