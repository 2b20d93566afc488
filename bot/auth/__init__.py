"""Console and API accounts: who may call the REST API and what they may do (roles: docs/security.md, "Accounts and roles").

Residents and workers in chat are not accounts: chat identities come from the channel. Accounts are for people
using the console or scripts: admins, grid workers (linked to their `workers` row), and read-only viewers.
"""
