"""The project's extensions of the Rasa server, imported by Rasa inside .venv-rasa (never by the app, never by training).

- `channels/`: input channels Rasa builds from credentials.yml (`rasa_ext.channels.prepared_rest.PreparedRestInput`);
- `stores/`: the tracker and lock stores endpoints.yml names (`rasa_ext.stores.…`, see bot/rasa_process.py);
- `patches/`: speed-ups of Rasa 3.6 internals, installed together by `rasa_ext.patches.install()`.

Not part of the training hash (bot/rasa_process.TRAINING_DIRS): the custom pipeline components, which a trained model
depends on, stay in rasa_components/.
"""
