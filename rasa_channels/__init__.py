"""Rasa input channels of this project, loaded by the Rasa server from credentials.yml (not training inputs)."""
