"""Rasa input channels of this project, built by the Rasa server from credentials.yml at start-up."""
