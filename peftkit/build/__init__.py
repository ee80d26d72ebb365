"""Build a run from a validated recipe: the setup, the base model (+ quantization), tokenised batches."""
