"""Web pages served by the app: the demo chat (/chat) and the admin and worker console (/console/…)."""
