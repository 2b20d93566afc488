"""Custom Rasa components, imported by the Rasa server from .venv-rasa (Python 3.10/3.11, Rasa's own stack).

Nothing here may import the app's packages: this code runs inside Rasa's virtualenv.
"""
