"""Run an evaluation on a two-node Ray cluster built on this machine (run as a script).

Prints the number of distinct Ray nodes that ran components, and the run's state and
score count. The test runs it in its own process: a Ray driver joins one cluster only.
"""

from __future__ import annotations

import json
import sys

import ray
from ray.cluster_utils import Cluster

import hypermetric as hm
from hypermetric.config import reset_settings


def node(output: str) -> float:
    return 1.0


@hm.component(evals=[node])
def where(question: str) -> str:
    import time

    time.sleep(0.005)
    return ray.get_runtime_context().get_node_id()


@hm.runtime(name="two-nodes", dataset=[{"id": i, "question": f"q{i}"} for i in range(1000)])
def spread(example: dict) -> str:
    return where(example["question"])


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        reset_settings(unit_size=20, workers=2, evaluators=2)
        result = spread.run(ray_address=cluster.address)
        nodes = {
            r[0] for r in result.calls().filter("component = 'where'").select("output").fetchall()
        }
        print(
            json.dumps(
                {
                    "state": result.run.state,
                    "scores": result.run.rows_count,
                    "nodes": len(nodes),
                    "cluster_nodes": len(ray.nodes()),
                }
            )
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
