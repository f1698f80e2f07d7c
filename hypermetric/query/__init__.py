"""Reading the history: DuckDB over committed shards (the only package that imports duckdb).

- :mod:`~hypermetric.query.connection`: ``connect()`` and ``sql()``, read-only views
  ``scores``, ``calls``, ``examples``, ``runs``, ``evaluations`` and ``dataset_versions``
- :mod:`~hypermetric.query.result`: ``RunResult``, one run's rows and summary
- :mod:`~hypermetric.query.compare`: paired comparison of two runs, metric by metric
  (:mod:`~hypermetric.query.paired` computes one metric's statistics)
- :mod:`~hypermetric.query.history`: a metric across runs, with shift detection
- :mod:`~hypermetric.query.power`: the examples and epochs needed to detect a change
- :mod:`~hypermetric.query.reduce`: each example's epochs reduced to one value, and
  cluster labels from the examples' fields
- :mod:`~hypermetric.query.compaction` and :mod:`~hypermetric.query.retention`: merging
  small shards, expiring versions and deleting what no readable version needs
- :mod:`~hypermetric.query.stats` and :mod:`~hypermetric.query.inference`: the statistics
  (t distribution, bootstrap, cluster-robust errors, McNemar, Wilson, power, Holm/BH,
  pass@k), numpy and the standard library only
"""

__all__: list[str] = []
