"""The lookups the Rasa server remembers (rasa_ext/patches/lookup_caches.py) give Rasa's own answers."""

from __future__ import annotations

import json
import subprocess

from bot.rasa_process import RASA_BIN, rasa_env
from bot.settings import PROJECT_ROOT

SCRIPT = """
import json
from rasa.engine.recipes.recipe import Recipe
from rasa.shared.core.events import Event, UserUttered
from rasa.shared.importers.importer import TrainingDataImporter
from rasa.shared.utils.common import all_subclasses
from rasa.shared.utils.io import read_yaml_file

config = read_yaml_file("config.yml")
recipe = Recipe.recipe_for_name(config.get("recipe"))
schema = recipe.graph_config_for_recipe(config, {}, training_type=None).predict_schema
names = sorted({cls.type_name for cls in all_subclasses(Event)})
targets = [["run_RegexMessageHandler"], ["select_prediction"], ["run_RegexMessageHandler", "select_prediction"]]

def answers():
    resolved = [Event.resolve_by_type(name).__name__ for name in names]
    try:
        Event.resolve_by_type("no_such_event")
        unknown = "no error"
    except ValueError as error:
        unknown = str(error)
    default = Event.resolve_by_type("no_such_event", UserUttered).__name__
    minimal = [sorted(schema.minimal_graph_schema(t).nodes) for t in targets]
    return {"resolved": resolved, "unknown": unknown, "default": default, "minimal": minimal}

before = answers()
from rasa_ext.channels.prepared_rest import PreparedRestInput
PreparedRestInput.from_credentials(None)  # what the Rasa server does at start-up
after, again = answers(), answers()
same_object = schema.minimal_graph_schema(["select_prediction"]) is schema.minimal_graph_schema(["select_prediction"])
print(json.dumps({"before": before, "after": after, "again": again, "cached": same_object, "names": names}))
"""


def test_remembered_lookups_answer_as_rasa_does() -> None:
    done = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", SCRIPT], cwd=PROJECT_ROOT, env=rasa_env(), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after"] == report["before"] == report["again"]
    assert report["cached"]  # the second run of the same targets reuses the first answer
    assert "user" in report["names"] and len(report["before"]["resolved"]) == len(report["names"])
    assert "Unknown event name 'no_such_event'" in report["before"]["unknown"]
    assert report["before"]["default"] == "UserUttered"
    nlu_nodes, core_nodes, both = report["before"]["minimal"]
    assert any("DIETClassifier" in n for n in nlu_nodes) and not any("RulePolicy" in n for n in nlu_nodes)
    assert any("RulePolicy" in n for n in core_nodes)
    assert set(both) == set(nlu_nodes) | set(core_nodes)
