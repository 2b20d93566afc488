"""NLU quality against its targets, with the sparse-only pipeline as the baseline measured in the same run.

    make bench-nlu        (or: .venv/bin/python bench/nlu_quality.py)

1. Trains (or reuses, by hash) two models from config.yml: the sparse pipeline and the same pipeline with
   the e5 dense featurizer, and scores both on the held-out split (tests/data/nlu_heldout.yml, never
   trained on): intent macro-F1, location entity F1.
2. For each, starts Rasa and runs every line of bench/data/group_chatter.txt (ordinary neighbour chatter)
   through the router's own decision for unaddressed group messages: the share it would answer is the
   false-trigger rate. Held-out requests give the opposite figure: how many real requests it answers
   without being @-mentioned.
3. When the training data differs from the last commit (`--against REV`, default HEAD), that commit's model too
   (bot.rasa_process.committed: trained once, then from the cache), so a change is judged beside what it replaces
   in the same run.
Targets (docs/benchmarks.md, "NLU quality"): macro-F1 >= 0.95, location F1 >= 0.90, false triggers <= 2 %.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bot import nlu_eval, rasa_process
from bot.expectations import MemoryExpectations
from bot.group_settings import GroupPolicy
from bot.normalise import normalise
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import PROJECT_ROOT, Settings

CHATTER = PROJECT_ROOT / "bench" / "data" / "group_chatter.txt"
E5_COMPONENT = "rasa_components.e5_featurizer.E5SentenceFeaturizer"
E5_LINE = re.compile(rf"^\s*- name: {re.escape(E5_COMPONENT)}.*\n", re.MULTILINE)
console = Console()


def variant_configs(workdir: Path) -> tuple[Path, Path]:
    """config.yml with and without the e5 featurizer, whichever of the two config.yml itself is."""
    text = (PROJECT_ROOT / "config.yml").read_text(encoding="utf-8")
    sparse = E5_LINE.sub("", text)
    dense = (
        text
        if sparse != text
        else text.replace("  - name: DIETClassifier", f"  - name: {E5_COMPONENT}\n  - name: DIETClassifier", 1)
    )
    assert dense != sparse, "config.yml has no DIETClassifier to put the e5 featurizer before"
    paths = (workdir / "config-sparse.yml", workdir / "config-e5.yml")
    for path, content in zip(paths, (sparse, dense), strict=True):
        path.write_text(content, encoding="utf-8")
    return paths


def location_f1(scores: nlu_eval.NluScores) -> float:
    return max((f1 for key, f1 in scores.entity_f1.items() if key.startswith("location")), default=0.0)


def heldout_requests(settings: Settings) -> list[str]:
    return [text for intent, text in nlu_eval.examples(nlu_eval.HELDOUT) if intent in settings.request_intents]


async def trigger_rates(rasa_url: str, settings: Settings) -> tuple[float, int, float, int, list[str]]:
    rasa = RasaClient(rasa_url)
    router = MessageRouter(settings, rasa, MemoryExpectations(), None, None)  # type: ignore[arg-type]
    policy = GroupPolicy(settings.command_prefixes, settings.request_confidence)

    async def answered(line: str) -> bool:
        text = normalise(line, settings.bot_name)
        return bool(text) and await router.unaddressed_parse(text, None, policy) is not None

    chatter = [line for line in CHATTER.read_text(encoding="utf-8").splitlines() if line.strip()]
    false_triggers = [line for line in chatter if await answered(line)]
    requests = heldout_requests(settings)
    caught = sum([await answered(line) for line in requests])
    await rasa.aclose()
    return len(false_triggers) / len(chatter), len(chatter), caught / len(requests), len(requests), false_triggers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--current-only",
        action="store_true",
        help="score only config.yml's own model (no baseline training): for a quick look while working on data",
    )
    parser.add_argument(
        "--against", default="HEAD", help="the commit whose model is scored beside these when the training data differs"
    )
    args = parser.parse_args()
    settings = Settings()
    workdir = Path(tempfile.mkdtemp(prefix="gridbot-nlu-bench-"))
    uses_e5 = E5_COMPONENT in (PROJECT_ROOT / "config.yml").read_text(encoding="utf-8")
    sparse_config, dense_config = variant_configs(workdir)
    current = "sparse + e5" if uses_e5 else "sparse only"
    configs = {"sparse only": sparse_config, "sparse + e5": dense_config}
    names = [current] if args.current_only else ["sparse only", "sparse + e5"]
    models = {name: rasa_process.ensure_model(console.print, config=configs[name]) for name in names}
    roots = dict.fromkeys(models, PROJECT_ROOT)
    with rasa_process.committed(args.against) as tree:
        committed_name = f"committed ({args.against})"
        changed = rasa_process.training_hash(tree / "config.yml", tree) != rasa_process.training_hash()
        if changed and not args.current_only:
            models[committed_name] = rasa_process.ensure_model(console.print, config=tree / "config.yml", root=tree)
            roots[committed_name] = tree
        console.print("scoring the models on the held-out split; false triggers through the router…")
        rows = {
            name: (
                nlu_eval.evaluate_heldout(model, workdir / name.replace(" ", ""), root=roots[name]),
                *trigger_run(model, workdir, settings, roots[name]),
            )
            for name, model in models.items()
        }

    table = Table(title="NLU on the held-out split (never trained on) and on group chatter")
    table.add_column("figure")
    for name in rows:
        marker = " (config.yml)" if name in configs and (name == "sparse + e5") == uses_e5 else ""
        table.add_column(name + marker, justify="right")
    table.add_column("target", justify="right")
    table.add_row("intent macro-F1", *(f"{r[0].intent_macro_f1:.3f}" for r in rows.values()), ">= 0.95")
    table.add_row("intent accuracy", *(f"{r[0].intent_accuracy:.3f}" for r in rows.values()), "")
    table.add_row("location entity F1", *(f"{location_f1(r[0]):.3f}" for r in rows.values()), ">= 0.90")
    trained = (_minutes(rasa_process.training_seconds(model)) for model in models.values())
    table.add_row("training time (when trained here)", *trained, "<= 5 min")
    table.add_row("false triggers on chatter", *(f"{r[1]:.1%} of {r[2]}" for r in rows.values()), "<= 2 %")
    table.add_row("held-out requests answered without @", *(f"{r[3]:.1%} of {r[4]}" for r in rows.values()), "")
    console.print(table)
    name = current
    scores, *_, examples = rows[name]
    weakest = sorted(scores.per_intent_f1.items(), key=lambda kv: kv[1])[:5]
    console.print(f"weakest intents ({name}): " + ", ".join(f"{intent} {f1:.2f}" for intent, f1 in weakest))
    for line in examples[:10]:
        console.print(f"  would answer unasked: {line}")


def _minutes(seconds: float | None) -> str:
    return "not timed (from the cache)" if seconds is None else f"{seconds / 60:.1f} min"


def trigger_run(model: Path, workdir: Path, settings: Settings, root: Path) -> tuple[float, int, float, int, list[str]]:
    with rasa_process.serving(model, workdir, root) as url:
        return asyncio.run(trigger_rates(url, settings))


if __name__ == "__main__":
    main()
