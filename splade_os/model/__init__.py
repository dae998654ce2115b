"""The model: loading an exported SPLADE folder and encoding text with ONNX Runtime (or PyTorch on a GPU), and the
export of a checkpoint to that folder. It knows no cluster, corpus or mapping."""
