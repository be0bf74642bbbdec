"""The verification community's formats: VNN-LIB properties in, VNN-COMP result files out,
and ONNX + VNN-LIB pairs exported for other verifiers (docs/vnnlib.md)."""
