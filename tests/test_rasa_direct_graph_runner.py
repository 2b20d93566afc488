"""The trained graph run node by node (rasa_ext/patches/direct_graph_runner.py) gives dask's answers.

Runs in the Rasa virtualenv on this repo's trained model: the same texts parsed and the same trackers
predicted with Rasa's dask runner and then with ours must give equal results; runs that cannot work fail with the same errors.
"""

from __future__ import annotations

import json
import subprocess

from bot import rasa_process
from bot.rasa_process import RASA_BIN, rasa_env
from bot.settings import PROJECT_ROOT

SCRIPT = """
import asyncio, json, sys
from rasa.core.agent import load_agent
from rasa.core.channels.channel import UserMessage
from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.events import ActionExecuted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

TEXTS = ["低保怎么申请", "3号楼楼道灯坏了", "今天天气真好啊", "基本满意", "办结 GD20260101-0001 已修好", "😀😀", "x" * 300]

async def answers(processor):
    parses, predictions = [], []
    for text in TEXTS:
        parse = await processor.parse_message(UserMessage(text, sender_id="t"))
        parses.append(parse)
        tracker = DialogueStateTracker("t", processor.domain.slots)
        tracker.update(ActionExecuted("action_listen"))
        tracker.update(UserUttered(text, parse["intent"], parse["entities"], parse))
        prediction = processor._predict_next_with_tracker(tracker)
        predictions.append([prediction.policy_name, prediction.max_confidence_index, prediction.probabilities])
    runner = processor.graph_runner
    failures = []
    for inputs, targets in (({}, [processor.model_metadata.nlu_target]),  # the message input missing
                            ({PLACEHOLDER_TRACKER: "run_RegexMessageHandler"}, [processor.model_metadata.core_target]),
                            ({PLACEHOLDER_MESSAGE: []}, ["no_such_node"])):  # a node's input of the wrong kind; an unknown target
        try:
            runner.run(inputs=inputs, targets=targets)
            failures.append("no error")
        except Exception as error:
            failures.append(type(error).__name__)
    return {"parses": parses, "predictions": predictions, "failures": failures}

async def main():
    agent = await load_agent(model_path=sys.argv[1])
    dask = await answers(agent.processor)
    from rasa_ext.channels.prepared_rest import PreparedRestInput
    PreparedRestInput.from_credentials(None)  # what the Rasa server does at start-up
    direct = await answers(agent.processor)
    print(json.dumps({"dask": dask, "direct": direct, "installed": DaskGraphRunner.run.__module__}, ensure_ascii=False))

asyncio.run(main())
"""


def test_direct_runs_give_dask_answers() -> None:
    model = rasa_process.ensure_model()
    done = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", SCRIPT, str(model)], cwd=PROJECT_ROOT,
        env=rasa_process.single_threaded(rasa_env()), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["installed"] == "rasa_ext.patches.direct_graph_runner"
    dask, direct = report["dask"], report["direct"]
    assert direct["parses"] == dask["parses"]
    assert direct["predictions"] == dask["predictions"]
    assert [p["intent"]["name"] for p in dask["parses"][:2]] == ["ask_policy", "report_issue"]
    assert dask["predictions"][0][0] == "RulePolicy"
    assert direct["failures"] == dask["failures"] == ["GraphRunError", "GraphComponentException", "KeyError"], (direct, dask)
