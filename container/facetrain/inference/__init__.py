"""Face detection and embedding run by ONNX Runtime, without torch.

The models are facenet-pytorch's own P-Net, R-Net, O-Net and InceptionResnetV1, exported to ONNX by
`export` (the one module here that imports torch; run at image build time or by `make setup`), which
writes each file's sha256 into the folder's manifest (`manifest`). `onnx_models` opens the files with
ONNX Runtime (CPU, or CUDA's provider) after checking them against it; `mtcnn` is facenet-pytorch's
detection glue (pyramid, boxes, NMS, calibration) in numpy; `facenet` crops and embeds faces.
"""
