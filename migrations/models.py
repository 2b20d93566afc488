"""Every module that defines tables, imported so `Base.metadata` is complete for migrations."""

from bot import deferred, group_settings  # noqa: F401
from bot.auth import models as auth_models  # noqa: F401
from bot.channels import outbound, webchat  # noqa: F401
from bot.channels.ilink import store as ilink_store  # noqa: F401
from grid import geography, notices, outbox, tickets  # noqa: F401
from grid import warnings as early_warnings  # noqa: F401
from knowledge import answer_policy, history, models, questions, vector_cache  # noqa: F401
from storage.base import Base

metadata = Base.metadata
