"""Converters (torch -> ONNX; later ONNX -> TensorRT) and their mandatory parity checks."""
