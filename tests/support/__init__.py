"""Harnesses the tests share: the test tiers (tiers.py) and the channel tests' own-database app hosts
(channel_hosts.py)."""
