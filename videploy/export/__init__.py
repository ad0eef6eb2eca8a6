"""PyTorch -> ONNX bundles (verified against PyTorch) and TensorRT engines."""
