"""Reading the history: DuckDB over committed shards (the only package that imports duckdb).

- :mod:`~hypermetric.query.connection`: ``connect()`` and ``sql()``, read-only views
  ``scores``, ``calls``, ``examples``, ``runs``, ``evaluations`` and ``dataset_versions``
- :mod:`~hypermetric.query.result`: ``RunResult``, one run's rows and summary
- :mod:`~hypermetric.query.compare`: paired comparison of two runs
- :mod:`~hypermetric.query.history`: a metric across runs, with shift detection
- :mod:`~hypermetric.query.compaction` and :mod:`~hypermetric.query.retention`: merging
  small shards, expiring versions and deleting what no readable version needs
- :mod:`~hypermetric.query.stats`: the statistics, numpy and the standard library only
"""

__all__: list[str] = []
