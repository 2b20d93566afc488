"""Speed-ups of Rasa 3.6 internals, installed by one explicit call: `install()`.

Each module here replaces one private method of Rasa's with one that gives the same answers faster (its docstring
says what it measured). Private methods change between Rasa releases without notice, so `install()` first checks
the running Rasa: on anything but 3.6.x it installs nothing and says so in the log, and Rasa runs as shipped
(correct, only slower) instead of with a replacement written for other internals. Each patch it installs is logged
by name, so a server's log tells which Rasa it is really running.

Where it is called: Rasa 3.6 loads no project code before it builds the input channels of credentials.yml. `rasa run`
(rasa/core/run.py `serve_application`) reads credentials.yml and calls each channel's `from_credentials` before it
creates the Sanic app, loads the model or builds the tracker and lock stores (those come later, in the
`before_server_start` listener `load_agent_on_start`, and only when endpoints.yml names them); its plugin hooks
(rasa/plugin.py) are discovered only through the enterprise `rasa_plus` package. So the project's channel
(`rasa_ext.channels.prepared_rest.PreparedRestInput.from_credentials`) is the earliest hook and calls `install()`
once; calling it again (a second channel, a test) changes nothing. `rasa train` builds no channels, so training
keeps Rasa's own code.

The patch modules are imported only after the version check: each captures the Rasa method it replaces at import.
"""

from __future__ import annotations

import importlib
import logging

logger = logging.getLogger(__name__)

SUPPORTED_RASA = "3.6."  # the release series whose internals these patches were written and tested against
# Installed in this order; each module has an `install()` and a docstring whose first line says what it does.
PATCHES = (
    "rasa_ext.patches.action_validation",
    "rasa_ext.patches.direct_graph_runner",
    "rasa_ext.patches.lookup_caches",
    "rasa_ext.patches.pooled_endpoints",
)

_installed: tuple[str, ...] | None = None  # None: install() has not run in this process


def rasa_version() -> str:
    from rasa.version import __version__

    return str(__version__)


def install(version: str | None = None) -> tuple[str, ...]:
    """Install every patch once per process and return the modules installed (empty on an unsupported Rasa).

    `version`: the Rasa version to check (default: the running Rasa's; a test passes another)."""
    global _installed
    if _installed is not None:
        return _installed
    running = version or rasa_version()
    if not running.startswith(SUPPORTED_RASA):
        logger.warning(
            "Rasa %s is not %sx: the gridbot patches of Rasa's internals (%s) are NOT installed; Rasa runs as shipped, "
            "correct but slower. Pin Rasa to %sx (requirements-rasa-*.lock) or check each patch against this release.",
            running, SUPPORTED_RASA, ", ".join(name.rsplit(".", 1)[1] for name in PATCHES), SUPPORTED_RASA,
        )  # fmt: skip
        _installed = ()
        return _installed
    for name in PATCHES:
        module = importlib.import_module(name)
        module.install()
        summary = (module.__doc__ or name).strip().splitlines()[0]
        logger.info("installed Rasa patch %s (Rasa %s): %s", name, running, summary)
    _installed = PATCHES
    return _installed


async def close_shared(*listener_args: object) -> None:
    """A Sanic `after_server_stop` listener: close the kept-alive action-server sessions when that patch is in."""
    if _installed and "rasa_ext.patches.pooled_endpoints" in _installed:
        from rasa_ext.patches import pooled_endpoints

        await pooled_endpoints.close_shared(*listener_args)
