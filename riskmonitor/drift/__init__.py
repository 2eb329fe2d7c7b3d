"""Drift and decisions: the model-drift tests and the gate, data drift per feature, and the decision records."""
