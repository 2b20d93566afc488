"""Every operation of the app's OpenAPI schema, fuzzed by schemathesis: no input gets a 5xx (docs/security.md).

The schema comes from the app itself (`create_app().openapi()`, the same document `/openapi.json` serves), so a
new route is fuzzed as soon as it exists. The requests go to the real app served by uvicorn on SQLite with the
demo data, logged in as the demo admin so the protected routes are exercised past their 401s.

Rasa is deliberately *not* running: the web chat route then holds messages for retry and answers "please wait"
(a 200), which is the behaviour under test for bad input; Rasa's own parsing of fuzzed text is not ours to
test, and starting it costs a minute. `POST /webhook` (Rasa's action protocol) needs no Rasa server: it is
fuzzed like the rest, with the malformed action calls anyone on the network could send.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from bot.app import create_app
from bot.demo import load_demo
from bot.embedded import app_server, free_port
from bot.settings import Settings

LOGIN_PATH = "/api/v1/auth/login"
LOGOUT_PATH = "/api/v1/auth/logout"
ADMIN = ("admin", "gridbot-demo")  # bot.auth.demo: DEMO_STAFF's admin and DEMO_PASSWORD

# The web chat is off by default (public servers): on here, so its routes are fuzzed like the rest.
schema = schemathesis.openapi.from_dict(create_app(Settings(local_chat_enabled=True)).openapi())
# Status codes seen per operation, so the run can show it got past authentication (and a reader what it hit).
seen: defaultdict[str, Counter[int]] = defaultdict(Counter)

# What schema-shaped generation never produces and broke the app (tests/test_input_guards.py): NaN/Infinity (JSON has no such
# numbers, Python's json reads them), lone surrogates and NUL (no database stores both), strings over the body cap,
# and one under it that a 422 must not echo whole. URLs cannot carry a surrogate: NUL and long text only there.
BAD_JSON: list[object] = [float("nan"), float("inf"), float("-inf"), "\ud800", "a\udfffb", "a\x00b", "x" * 50_000, "楼" * 40_000]
BAD_FORM: list[object] = ["a\x00b", "x" * 100_000]
BAD_URL: list[object] = ["a\x00b", "\x00", "x" * 2_000]


spoilt_ids: set[str] = set()  # the cases flatmap_case changed, to count how many were sent


def _spoiled(mapping: dict[str, object], bad: list[object]) -> st.SearchStrategy[dict[str, object]]:
    """The mapping with one entry (an existing one, or a new one) set to a bad value."""
    keys = st.sampled_from(sorted(mapping)) if mapping else st.just("x")
    return st.tuples(keys, st.sampled_from(bad)).map(lambda pair: {**mapping, pair[0]: pair[1]})


@schema.hook
def flatmap_case(_context: schemathesis.HookContext, case: schemathesis.Case) -> st.SearchStrategy[schemathesis.Case]:
    """One case in four gets a bad value in its body, query or path; a JSON body is then sent as the bytes
    json.dumps writes (NaN and `\\ud800` literals), which the client would otherwise refuse to send."""

    def with_body(body: object) -> schemathesis.Case:
        spoilt = case.derive()
        json_body = "json" in (case.media_type or "")
        spoilt.body = json.dumps(body).encode() if json_body else body  # type: ignore[assignment]
        spoilt_ids.add(spoilt.id)
        return spoilt

    def with_query(query: dict[str, object]) -> schemathesis.Case:
        spoilt = case.derive(query=query)
        spoilt_ids.add(spoilt.id)
        return spoilt

    def with_path(parameters: dict[str, object]) -> schemathesis.Case:
        spoilt = case.derive()
        spoilt.path_parameters = parameters
        spoilt_ids.add(spoilt.id)
        return spoilt

    options = [st.just(case)] * 3 + [_spoiled(case.query or {}, BAD_URL).map(with_query)]
    if case.path_parameters:
        options.append(_spoiled(case.path_parameters, BAD_URL).map(with_path))
    media = case.media_type or ""
    if "json" in media:
        body = case.body if isinstance(case.body, dict) else {}
        options.append(st.one_of(_spoiled(body, BAD_JSON), st.sampled_from(BAD_JSON)).map(with_body))
    elif "x-www-form-urlencoded" in media and isinstance(case.body, dict):
        options.append(_spoiled(case.body, BAD_FORM).map(with_body))
    return st.one_of(options)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app on a fresh SQLite database with the demo data; Rasa's address points at a closed port."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'gridbot.db'}"
    load_demo(database_url, updated_by="fuzz")
    settings = Settings(
        database_url=database_url,
        redis_url=None,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        app_port=free_port(),
        local_chat_enabled=True,
    )
    with app_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def auth_headers(fuzz_app: str) -> dict[str, str]:
    """The one seam for credentials: headers every fuzzed request carries.

    With the login route present this is the demo admin's session cookie plus its CSRF token (so unsafe
    methods are let through too); without it, no headers, and protected routes would only be fuzzed up to
    their refusal. Another account or an API token (`Authorization: Bearer …`) goes here.
    """
    if LOGIN_PATH not in schema.raw_schema.get("paths", {}):
        return {}
    response = httpx.post(f"{fuzz_app}{LOGIN_PATH}", json={"username": ADMIN[0], "password": ADMIN[1]}, timeout=30)
    assert response.status_code == 200, response.text
    cookies = "; ".join(f"{name}={value}" for name, value in response.cookies.items())
    headers = {"Cookie": cookies}
    if csrf := response.json().get("csrf_token"):
        headers["X-CSRF-Token"] = csrf
    return headers


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_gets_a_server_error(case: schemathesis.Case, fuzz_app: str, auth_headers: dict[str, str]) -> None:
    # Logging out would end the shared session for the operations fuzzed after it: that one goes without it.
    headers = {} if case.path == LOGOUT_PATH else auth_headers
    response = case.call_and_validate(base_url=fuzz_app, headers=headers, checks=[not_a_server_error], timeout=60)
    seen[case.operation.label][response.status_code] += 1
    seen["(cases with a bad value)"][response.status_code] += case.id in spoilt_ids


def test_the_fuzzing_got_past_authentication(auth_headers: dict[str, str]) -> None:
    """Runs after the fuzzing: with credentials, protected routes answered something other than 401."""
    if not seen:
        pytest.skip("run together with test_no_input_gets_a_server_error")
    print("\n".join(f"{label}: {dict(sorted(codes.items()))}" for label, codes in sorted(seen.items())))
    bad = seen.pop("(cases with a bad value)", Counter())
    print(f"{sum(sum(codes.values()) for codes in seen.values())} cases, {bad.total()} of them with a bad value")
    assert bad.total() and set(bad) & {413, 422}, bad  # the bad values were sent, and refused
    if auth_headers:
        protected = {label: codes for label, codes in seen.items() if 401 in codes or 403 in codes}
        assert any(set(codes) - {401, 403} for codes in protected.values()), protected
