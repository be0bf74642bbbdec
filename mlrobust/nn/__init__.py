"""The network IR: ONNX read into an explicit list of ops, run in torch."""
