"""Online alignment: sample K completions per prompt, score, label, update."""
