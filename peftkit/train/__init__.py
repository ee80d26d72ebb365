"""Training: the loop that turns a validated recipe into a run folder, its checkpoints and memory meter."""
