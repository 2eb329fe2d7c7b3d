"""The models: training, scoring (F1 with its confusion counts), the served model, and the registry of trained models."""
