"""The web view: ``hypermetric ui``, a read-only server over the metadata DB and shards.

A layer above :mod:`hypermetric.query` (nothing below imports it), with its templates and
its hand-written JavaScript and CSS inside the package (no build step):

- :mod:`~hypermetric.ui.app`: the routes, pages and JSON endpoints (Starlette)
- :mod:`~hypermetric.ui.grid`, :mod:`~hypermetric.ui.evaluation` (with
  :mod:`~hypermetric.ui.charts`), :mod:`~hypermetric.ui.runs`,
  :mod:`~hypermetric.ui.comparison`, :mod:`~hypermetric.ui.console`: each page's data
- :mod:`~hypermetric.ui.cache`: each run's stats, read once while the run cannot change
- :mod:`~hypermetric.ui.writes`: the writes and the token they need
- :mod:`~hypermetric.ui.server`: serving it (uvicorn), on 127.0.0.1 unless told otherwise
"""

__all__: list[str] = []
