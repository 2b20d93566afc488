"""The grid ticket system: geography (district → street → community → grid), workers, groups and tickets.

Knows nothing of Rasa, WeChat or HTTP; adapters in actions/ and bot/ call into it.
"""
