"""The training side: sample data, prep, train, evaluate, gate, ONNX export (dev requirements)."""
