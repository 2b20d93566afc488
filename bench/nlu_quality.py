"""NLU quality against its targets, with the sparse-only pipeline as the baseline measured in the same run.

    make bench-nlu        (or: .venv/bin/python bench/nlu_quality.py)

1. Trains (or reuses, by hash) two models: config.yml (sparse + e5 dense features) and the same pipeline
   without the e5 featurizer (the baseline), and scores both on the held-out split
   (tests/data/nlu_heldout.yml, never trained on): intent macro-F1, location entity F1.
2. Starts Rasa with config.yml's model and runs every line of bench/data/group_chatter.txt (ordinary
   neighbour chatter) through the router's own decision for unaddressed group messages: the share it
   would answer is the false-trigger rate. Held-out requests give the opposite figure: how many real
   requests it answers without being @-mentioned.
Targets (issue #3): macro-F1 >= 0.95, location F1 >= 0.90, false triggers <= 2 %.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from bot import nlu_eval, rasa_process
from bot.embedded import free_port
from bot.expectations import MemoryExpectations
from bot.group_settings import GroupPolicy
from bot.normalise import normalise
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import PROJECT_ROOT, Settings

CHATTER = PROJECT_ROOT / "bench" / "data" / "group_chatter.txt"
E5_LINE = re.compile(r"^\s*- name: rasa_components\.e5_featurizer\.E5SentenceFeaturizer.*\n", re.MULTILINE)
console = Console()


def sparse_config(workdir: Path) -> Path:
    """config.yml minus the dense featurizer: the baseline."""
    text = (PROJECT_ROOT / "config.yml").read_text(encoding="utf-8")
    stripped = E5_LINE.sub("", text)
    assert stripped != text, "config.yml has no E5SentenceFeaturizer line to remove"
    path = workdir / "config-sparse.yml"
    path.write_text(stripped, encoding="utf-8")
    return path


def location_f1(scores: nlu_eval.NluScores) -> float:
    return max((f1 for key, f1 in scores.entity_f1.items() if key.startswith("location")), default=0.0)


def heldout_requests(settings: Settings) -> list[str]:
    texts = []
    for block in yaml.safe_load(nlu_eval.HELDOUT.read_text(encoding="utf-8"))["nlu"]:
        if block.get("intent") in settings.request_intents:
            texts += [
                re.sub(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})", r"\1", line.strip()[2:])
                for line in block["examples"].splitlines()
                if line.strip().startswith("- ")
            ]
    return texts


async def trigger_rates(rasa_url: str, settings: Settings) -> tuple[float, int, float, int, list[str]]:
    rasa = RasaClient(rasa_url)
    router = MessageRouter(settings, rasa, MemoryExpectations(), None, None)  # type: ignore[arg-type]
    policy = GroupPolicy(settings.command_prefixes, settings.request_confidence)

    async def answered(line: str) -> bool:
        text = normalise(line, settings.bot_name)
        return bool(text) and await router.worth_answering(text, None, policy)

    chatter = [line for line in CHATTER.read_text(encoding="utf-8").splitlines() if line.strip()]
    false_triggers = [line for line in chatter if await answered(line)]
    requests = heldout_requests(settings)
    caught = sum([await answered(line) for line in requests])
    await rasa.aclose()
    return len(false_triggers) / len(chatter), len(chatter), caught / len(requests), len(requests), false_triggers


def main() -> None:
    settings = Settings()
    workdir = Path(tempfile.mkdtemp(prefix="gridbot-nlu-bench-"))
    dense_model = rasa_process.ensure_model(console.print)
    sparse_model = rasa_process.ensure_model(console.print, config=sparse_config(workdir))
    console.print("scoring both models on the held-out split…")
    dense = nlu_eval.evaluate_heldout(dense_model, workdir / "dense")
    sparse = nlu_eval.evaluate_heldout(sparse_model, workdir / "sparse")

    port = free_port()
    endpoints = rasa_process.write_endpoints(workdir / "endpoints.yml", "http://127.0.0.1:9/webhook", None)
    process = rasa_process.start_rasa(dense_model, port, endpoints, workdir / "rasa.log")
    try:
        console.print("starting Rasa for the trigger-rate run…")
        rasa_process.wait_ready(f"http://127.0.0.1:{port}", process)
        false_rate, n_chatter, catch_rate, n_requests, examples = asyncio.run(trigger_rates(f"http://127.0.0.1:{port}", settings))
    finally:
        process.terminate()
        process.wait(timeout=30)

    table = Table(title="NLU on the held-out split (never trained on)")
    for column in ("figure", "baseline: sparse only", "config.yml: sparse + e5", "target"):
        table.add_column(column, justify="right" if column != "figure" else "left")
    table.add_row("intent macro-F1", f"{sparse.intent_macro_f1:.3f}", f"{dense.intent_macro_f1:.3f}", ">= 0.95")
    table.add_row("intent accuracy", f"{sparse.intent_accuracy:.3f}", f"{dense.intent_accuracy:.3f}", "")
    table.add_row("location entity F1", f"{location_f1(sparse):.3f}", f"{location_f1(dense):.3f}", ">= 0.90")
    console.print(table)
    weakest = sorted(dense.per_intent_f1.items(), key=lambda kv: kv[1])[:5]
    console.print("weakest intents (config.yml): " + ", ".join(f"{name} {f1:.2f}" for name, f1 in weakest))
    console.print(
        f"false triggers on group chatter: {false_rate:.1%} of {n_chatter} lines (target <= 2 %); "
        f"held-out requests answered without @: {catch_rate:.1%} of {n_requests}"
    )
    for line in examples[:10]:
        console.print(f"  would answer: {line}")


if __name__ == "__main__":
    main()
