"""Validate custom-action results against Rasa's schema without re-checking the schema on every call.

Rasa 3.6 validates each action server response with `jsonschema.validate`, which first checks the schema
itself against the JSON Schema 2020-12 meta-schema. That check does not depend on the response, yet it cost
about a quarter of the Rasa server's CPU in a policy-question turn (py-spy, bench/e2e.py load). Here the
schema is checked once and its validator reused: the same responses pass, the same ones fail with the
same message. Installed by `rasa_ext.patches.install()` when the Rasa server starts.
"""

from __future__ import annotations

from typing import Any

from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction

_original = RemoteAction._validate_action_result


def _validator(spec: dict[str, Any]) -> Any:
    cls = validator_for(spec)
    cls.check_schema(spec)
    return cls(spec)


_VALIDATOR = _validator(RemoteAction.action_response_format_spec())


def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
    if _VALIDATOR.is_valid(result):
        return True
    return _original(self, result)  # invalid: Rasa's own path raises its ValidationError, hint included


def install() -> None:
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
