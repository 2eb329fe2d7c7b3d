"""The library behind the Dynamic Risk Assessment System's commands (the scripts at the project's top level).

Layers, checked by import-linter (pyproject.toml, docs/architecture.md), from the top:
pipeline | web | client -> reporting -> drift | alerts -> model -> data -> store -> config.
"""
