"""Baselines on equal terms with GRN: the same tokenizer, data, backbone and budget; only the paradigm differs."""
