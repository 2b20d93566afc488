"""`rasa_ext.patches.install()`: one explicit call that checks the Rasa version, logs each patch and runs once.

Runs in the Rasa virtualenv, each case in a fresh interpreter (a patch, once installed, stays for the process).
"""

from __future__ import annotations

import json
import subprocess

from bot.rasa_process import RASA_BIN, rasa_env
from bot.settings import PROJECT_ROOT

SCRIPT = """
import json, logging, sys
from rasa.core.actions.action import RemoteAction
from rasa.engine.graph import GraphSchema
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.events import Event
from rasa.utils.endpoints import EndpointConfig

records = []
handler = logging.Handler()
handler.emit = lambda record: records.append([record.levelname, record.getMessage()])
logging.getLogger("rasa_ext").addHandler(handler)
logging.getLogger("rasa_ext").setLevel(logging.INFO)

targets = lambda: [RemoteAction._validate_action_result, DaskGraphRunner.run, GraphSchema.minimal_graph_schema,
                   Event.__dict__["resolve_by_type"], EndpointConfig.session]
before = targets()
from rasa_ext import patches
from rasa_ext.channels.prepared_rest import PreparedRestInput
if sys.argv[1] == "unsupported":
    first = patches.install(version="3.7.1")
else:
    PreparedRestInput.from_credentials(None)  # what the Rasa server does at start-up
    first = patches.install()
after_first = targets()
second = patches.install()
PreparedRestInput.from_credentials(None)  # a second channel built changes nothing
replaced = [a is not b for a, b in zip(before, after_first)]
unchanged_later = [a is b for a, b in zip(after_first, targets())]
print(json.dumps({"first": list(first), "second": list(second), "replaced": replaced,
                  "unchanged_later": unchanged_later, "logs": records}, ensure_ascii=False))
"""


def _run(case: str) -> dict[str, object]:
    done = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", SCRIPT, case], cwd=PROJECT_ROOT, env=rasa_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_install_patches_rasa_36_once_and_logs_each_patch() -> None:
    report = _run("supported")
    names = [
        "rasa_ext.patches.action_validation",
        "rasa_ext.patches.direct_graph_runner",
        "rasa_ext.patches.lookup_caches",
        "rasa_ext.patches.pooled_endpoints",
    ]
    assert report["first"] == report["second"] == names
    assert report["replaced"] == [True] * 5 and report["unchanged_later"] == [True] * 5
    logs = report["logs"]
    assert isinstance(logs, list)
    installed = [message for level, message in logs if level == "INFO" and message.startswith("installed Rasa patch")]
    assert [message.split()[3] for message in installed] == names  # each once, in order, despite three calls
    assert all("Rasa 3.6." in message for message in installed)


def test_install_refuses_another_rasa_release_and_says_so() -> None:
    report = _run("unsupported")
    assert report["first"] == report["second"] == []
    assert report["replaced"] == [False] * 5  # Rasa runs as shipped
    logs = report["logs"]
    assert isinstance(logs, list)
    assert [level for level, _ in logs] == ["WARNING"]
    assert "Rasa 3.7.1 is not 3.6.x" in logs[0][1] and "NOT installed" in logs[0][1]
