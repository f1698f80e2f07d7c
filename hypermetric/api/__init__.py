"""What users write: components, evals, runtimes, binding, datasets and code versions.

Nothing here starts Ray or opens the metadata DB: decorating code only registers and
validates it. The package root re-exports the public names.
"""

__all__: list[str] = []
