//! The embedding model: weights, ONNX graph, ONNX Runtime session, ImageNet labels.
