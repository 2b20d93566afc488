"""HTTP adapters: the web chat channel, Rasa's action endpoint, health."""
