"""The demo the quickstart runs: question answering over a corpus made for it."""

__all__: list[str] = []
