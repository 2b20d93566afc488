"""GridBot runtime: channels, the message router, the Rasa client, the action endpoint, the web app and CLI."""
