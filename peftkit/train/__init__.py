"""Training: the loop (Trainer: setup -> fit -> finish), checkpoints, stop requests, the memory meter."""
