"""The model: loading an exported SPLADE folder and encoding text with ONNX Runtime (or PyTorch on a GPU), the
export of a checkpoint to that folder, and encoding files to JSON Lines."""
