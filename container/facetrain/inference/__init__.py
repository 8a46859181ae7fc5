"""Face detection and embedding run by ONNX Runtime, without torch.

The models are facenet-pytorch's own P-Net, R-Net, O-Net and InceptionResnetV1, exported to ONNX by
`facetrain.inference.export` (the one module here that imports torch, run at build time or by `make
setup`). `mtcnn` is facenet-pytorch's detection glue (pyramid, box generation, NMS, calibration) in
numpy; `onnx_models` opens the exported files with ONNX Runtime; `facenet` crops and embeds faces.
"""
