"""Rasa custom actions, served by the gridbot app's /webhook through rasa_sdk's executor.

Actions stay thin: read the tracker, call knowledge/ or grid/, turn the result into messages.
"""
