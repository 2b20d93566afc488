"""The city's local time: ticket numbers, deadlines shown to people, quiet hours and expiry dates use it.

Stored times are UTC; this is the one place that says which local zone the grids live in.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
