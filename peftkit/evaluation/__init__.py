"""Evaluation: scores on a split, prepacked CPU inference, metrics, and finished runs reloaded (load_run, predict)."""
