"""Rasa tracker and lock stores of this project, named by class path in endpoints.yml (bot/rasa_process.py writes it)."""
