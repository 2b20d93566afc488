"""Remember two answers Rasa 3.6 works out again on every call, although they cannot change while it serves.

py-spy on the Rasa server under bench/e2e.py load showed each at about 2.5 % of its CPU:

- `Event.resolve_by_type` finds an event's class by its type name by walking every `Event` subclass (and
  asking `inspect.isabstract` of each) for every event it reads: each tracker loaded from Redis, each event
  an action returns.
- `GraphSchema.minimal_graph_schema` finds the nodes a graph run needs by walking the dependencies
  recursively, visiting shared ones again for each path; every parse and every policy prediction runs it
  for the same handful of targets.

Both answers depend only on the classes imported and on the trained graph, which are fixed once the server
has loaded its model (a model loaded later is a new schema object, with its own cache). Installed by
`rasa_ext.patches.install()` when the Rasa server starts.
"""

from __future__ import annotations

from rasa.engine.graph import GraphSchema
from rasa.shared.core.events import Event

_original_resolve = Event.resolve_by_type
_original_minimal = GraphSchema.minimal_graph_schema
_event_types: dict[str, type[Event]] = {}
_SCHEMA_CACHE = "_gridbot_minimal_schemas"  # an attribute on each schema: dies with the schema it describes


def _resolve_by_type(type_name: str, default: type[Event] | None = None) -> type[Event] | None:
    found = _event_types.get(type_name)
    if found is not None:
        return found
    resolved = _original_resolve(type_name, default)  # unknown names: Rasa's own default or error
    if resolved is not None and getattr(resolved, "type_name", None) == type_name:
        _event_types[type_name] = resolved
    return resolved


def _minimal_graph_schema(self: GraphSchema, targets: list[str] | None = None) -> GraphSchema:
    cache: dict[tuple[str, ...], GraphSchema] = self.__dict__.setdefault(_SCHEMA_CACHE, {})
    key = tuple(targets) if targets else tuple(self.target_names)
    if key not in cache:
        cache[key] = _original_minimal(self, list(key))
    return cache[key]


def install() -> None:
    Event.resolve_by_type = staticmethod(_resolve_by_type)  # type: ignore[method-assign,assignment]
    GraphSchema.minimal_graph_schema = _minimal_graph_schema  # type: ignore[method-assign]

