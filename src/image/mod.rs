//! Image decoding and preprocessing: files and bytes in, model-ready tensors out.
