"""Run Rasa's predict graph by calling its nodes in dependency order, without dask's scheduler.

Every parse and every policy prediction is a run of the trained graph. Rasa 3.6 hands each run to
`dask.get`, a general scheduler (task ordering, a thread-pool shim, result packing) for what is, on a
server, a dozen nodes called one after the other on the event loop's thread. Here each needed node is
called once, after the nodes it needs, with the same arguments dask would pass: a parent's `(name, output)`
pair, an input's `(name, value)` pair, or the bare name of something that nobody provides (the node then
raises Rasa's own "missing input" error). Results are the same objects; only the bookkeeping goes.

Installed by `rasa_ext.patches.install()` when the Rasa server starts; training keeps dask.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner


def _run(self: DaskGraphRunner, inputs: dict[str, Any] | None = None, targets: list[str] | None = None) -> dict[str, Any]:
    run_targets = targets if targets else self._graph_schema.target_names
    nodes = self._graph_schema.minimal_graph_schema(run_targets).nodes  # cached per targets (lookup_caches)
    results: dict[str, Any] = {}
    for name, value in (inputs or {}).items():
        if isinstance(value, str) and value in nodes:  # Rasa's own check: dask would read it as a reference
            raise GraphRunError(
                f"Input value '{value}' clashes with a node name. Make sure that none of the input names passed "
                "to the `run` method are the same as node names in the graph schema."
            )
        results[name] = (name, value)

    def compute(name: str) -> Any:
        if name in results:
            return results[name]
        if name not in nodes:
            return name  # what dask passes for a key nobody provides
        # Each parent before its child; a graph is shallow (a pipeline is ~15 nodes deep), so recursion is safe.
        args = [compute(parent) for parent in nodes[name].needs.values()]
        results[name] = self._instantiated_nodes[name](*args)
        return results[name]

    missing = [target for target in run_targets if target not in nodes and target not in results]
    if missing:
        raise KeyError(missing[0])  # as dask.get does for a key the graph does not have
    try:
        return dict(compute(target) for target in run_targets)
    except RuntimeError as error:
        raise GraphRunError("Error running runner.") from error


def install() -> None:
    DaskGraphRunner.run = _run  # type: ignore[method-assign]
