"""Configuration from the environment; every default is the embedded one (SQLite, in-memory state, local Rasa).

Also read from the project's `.env` file when there is one (variables set in the environment win): .env.example
lists every setting with its default, generated from this class (`python -m bot.env_example`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from sqlalchemy.engine import make_url

from bot import setting_formats as formats
from bot.setting_formats import ApiKeys, ClockTime, Networks, RateLimits, RobotMap, WebhookTargets

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The operator's settings file; every `gridbot` command also loads it into its environment (bot/env_file.py).
ENV_FILE = PROJECT_ROOT / ".env"


class Settings(BaseSettings):
    # Errors never echo the value: it may be a secret (a webhook secret inside WEBHOOK_TARGETS, an API key).
    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    # The database as an SQLAlchemy URL: SQLite under var/ (the embedded default) or postgresql://user:pass@host/db.
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'gridbot.db'}"
    # Redis: Rasa's trackers and locks, and the state app processes share (conversations, rate limits, notice queue).
    # Unset: kept in memory, for one app process and one Rasa server.
    redis_url: str | None = None
    # The Rasa server each turn goes to (or several, comma-separated: bot/rasa_client.py takes turns), and how long
    # one call may take before the message is held for a retry.
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_timeout_seconds: float = 30.0
    # `gridbot run` supervises the Rasa servers it starts (bot/rasa_supervisor.py). A server that exits, or fails
    # this many status probes in a row (one every probe interval, each allowed the probe timeout), is restarted
    # after a pause doubling from the first to the cap. Generous: a busy server answers /status late, not never.
    rasa_probe_seconds: float = 5.0
    rasa_probe_timeout_seconds: float = 5.0
    rasa_probe_failures: int = 4
    rasa_restart_first_seconds: float = 1.0
    rasa_restart_max_seconds: float = 60.0
    # How long a Rasa server may take to load its model after a (re)start before it counts as failed.
    rasa_start_timeout_seconds: float = 300.0
    # Stopping `gridbot run`: its Rasa servers get SIGTERM, and SIGKILL if still there after this long.
    rasa_stop_seconds: float = 5.0
    # Where `gridbot run` writes the Rasa servers' endpoints file and logs (log/rasa*.log).
    run_dir: Path = PROJECT_ROOT / "var"
    # Where the app listens; Rasa's action endpoint points here.
    app_host: str = "127.0.0.1"
    app_port: int = 8000
    # uvicorn's line per HTTP request. Off by default: Rasa's action calls and the chat API make two per message,
    # and building and redacting those records was ~7 % of the app's CPU under load; nginx in front of the apps
    # (deploy/nginx.conf) logs every request anyway. Errors and the app's own records are logged either way.
    app_access_log: bool = False
    # Least severe log records printed (DEBUG, INFO, WARNING, ERROR), and their form: `text` (one line each) or `json`
    # (one JSON object per line: time, level, logger, message, exception; for log shippers). Phones and secrets are
    # masked in both (bot/logging_setup.py).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    # The bot's name in the groups: "@网格助手" addresses it, and the name is stripped before NLU reads the text.
    bot_name: str = "网格助手"
    # The local web chat (/chat and /api/v1/local/*) lets anyone who reaches the app play any resident, or a worker
    # whose workers.channel is webchat, and read their transcripts: right for trying the bot and for tests, wrong on a
    # public server. Off unless set; `gridbot run` (the embedded demo) and bot.embedded.app_server turn it on.
    # Even on, it never acts as a worker of another channel (WeChat, WeCom): grid/service.py actor_for.
    local_chat_enabled: bool = False
    # The secret Rasa's action calls (POST /webhook, GET /actions) must carry, in the X-Gridbot-Action-Token header
    # (bot/rasa_process.write_endpoints) or as ?token= (Rasa's `token:` in endpoints.yml). Unset: the process
    # generates one per start (bot/rasa_tokens.py, logged) and gives it to the Rasa it starts (`gridbot run`, tests,
    # benches); a Rasa started elsewhere must then be given the same ACTION_ENDPOINT_TOKEN.
    action_endpoint_token: SecretStr = SecretStr("")
    # Rasa's HTTP API token (`rasa run --auth-token`): the app sends it as ?token= on every call (parse, turns,
    # status). Unset: whoever starts Rasa generates one per start (bot/rasa_tokens.py) and the app uses it.
    rasa_auth_token: SecretStr = SecretStr("")
    # A group message not addressed to the bot is still answered when NLU is this sure it is a request.
    request_intents: tuple[str, ...] = (
        "ask_policy",
        "report_issue",
        "check_ticket_status",
        "urge_ticket",
        "ask_human",
        "complain_service",
        "ask_notices",
    )
    request_confidence: float = 0.85
    # ...and only when the open-set gate (rasa_components/grid_gate.py) scores it a grid matter at least this much.
    # Chosen on held-out real chatter (`bench/nlu_real.py --calibrate`: 98th percentile of Weibo chatter scores), not
    # on what bench/nlu_real.py reports.
    grid_matter_threshold: float = 0.78
    # While the bot waits for someone's answer, these intents are still treated as chatter and ignored.
    chatter_intents: tuple[str, ...] = ("chitchat", "greet", "goodbye", "thanks", "out_of_scope", "bot_challenge")
    # Trigger prefixes that address the bot like an @-mention, in every group (a group adds its own: `gridbot group set`).
    command_prefixes: tuple[str, ...] = ("#助手", "小助手")
    # Longest message the web chat API takes, in characters (413 beyond it).
    max_text_chars: int = 2000
    # Largest request body of the chat and JSON APIs, in bytes: 413 beyond it, refused from a declared Content-Length
    # before the body is read, counted while a chunked one streams (bot/api/guards.py). The knowledge import, Rasa's
    # action calls and WeCom callbacks keep their own limits (guards.OWN_LIMITS).
    max_request_body_bytes: int = 64 * 1024
    # How long the bot keeps listening to a resident it asked a question (location, rating), unaddressed.
    expect_reply_seconds: int = 30 * 60
    # How long after a knowledge-base answer the bot listens for the resident's "没用" (answer_unhelpful).
    expect_feedback_seconds: int = 30 * 60
    # How long after a knowledge-base answer a question that names nothing of its own (那要带什么材料, 一个月能领多少)
    # is read as about that answer (knowledge/followups.py). Short: later, such a question may be about anything.
    followup_window_seconds: int = 10 * 60
    # How often messages held while Rasa was down are tried again (in arrival order).
    deferred_retry_seconds: float = 30.0
    # A message a platform was told had arrived (WeCom, wechaty) and no process finished handling within this long
    # is replayed by the deferred job: its process died mid-turn. Longer than any turn (Rasa's timeout and retry).
    received_stale_seconds: float = 300.0
    # A report that repeats an open ticket filed within this window joins it (grid/duplicates.py): the same
    # specific spot and, with an embedding model, descriptions alike in meaning (else the same category).
    duplicate_window_hours: float = 72.0
    # Probabilities (0..1, the pair model over e5 clause score and problem words) at or above which a report joins
    # the open ticket, or is filed and flagged 可能重复 to the worker. Unset: the values chosen on the dev pairs for
    # the `auto` model (grid/duplicates.CALIBRATED, `bench/duplicates.py --calibrate`); set them after changing models.
    duplicate_link_score: float | None = None
    duplicate_flag_score: float | None = None
    # Early warnings (预警, grid/warnings.py): thresholds and windows are grid/data/warnings.yml; a site's own YAML of
    # the same shape, named here, is laid over it key by key (per category, per community). Empty: the shipped rules.
    warnings_file: Path | None = None
    # How often pending webhook deliveries (the outbox, WEBHOOK_TARGETS) are sent.
    outbox_interval_seconds: float = 5.0
    # How often queued outgoing chat messages (failed or paced sends on WeChat/WeCom) are tried again.
    outbound_retry_seconds: float = 5.0
    # How often the 督办 job looks for tickets at 75 % of their time or overdue.
    deadline_check_seconds: float = 60.0
    # Life-safety emergencies (电梯困人, 着火, 燃气味…; grid/emergencies.py): their tickets are due this soon, and
    # while nobody has accepted one, its worker and the community lead are told again every renotice interval.
    # The check runs more often than the deadline check, because minutes count here.
    emergency_deadline_minutes: float = 60.0
    emergency_renotice_minutes: float = 5.0
    emergency_check_seconds: float = 30.0
    # A picture (or a voice note's text) a worker sends in private chat within this many minutes after accepting or
    # resolving a ticket is that ticket's evidence (bot/worker_evidence.py); later, the one ticket in progress.
    worker_evidence_minutes: float = 30.0
    # A worker's day (bot/worker_day.py): the morning digest (a lead: the community's briefing) goes to every worker
    # who turned it on, at this local time (HH:MM; empty: never), checked this often, once a day across processes.
    morning_digest_at: ClockTime = Field("08:00", validate_default=True)
    morning_digest_check_seconds: float = 60.0
    # External systems that receive every ticket event, as JSON: [{"name": "city", "url": "https://…", "secret": "…"}]
    webhook_targets: WebhookTargets = Field("", validate_default=True)
    # Keys that may create requests through Open311 POST (comma-separated); GET needs none unless the next is set.
    open311_api_keys: ApiKeys = Field("", validate_default=True)
    # Reads (GET services/requests) need one of those keys too: for cities that do not publish requests. Off, they
    # are public (deploy/nginx.conf serves them), and residents' phone, ID and room numbers are masked either way.
    open311_read_requires_key: bool = False
    # Dense retrieval model for the knowledge base: `auto` (offline multilingual-e5-small built by `make setup`),
    # a local sentence-transformers folder, a hub name (e.g. BAAI/bge-small-zh-v1.5) or `none` (lexical only).
    kb_embedding_model: str = "auto"
    # Text put before every sentence for the model; unset: the model's convention ("query: " for e5).
    kb_embedding_prefix: str | None = None

    # --- benefit notices (惠民信息, issue #6) ---
    # With REDIS_URL the app runs notice jobs in-process too; false when only `gridbot worker` processes send.
    notice_worker_in_app: bool = True
    # Prefix of the notices' Redis keys (queue, job ids, rate limits). Unset: derived from DATABASE_URL, so every
    # process on one database shares the queue and two installations on one Redis never run each other's jobs.
    notice_namespace: str | None = None
    # How often each process plans due notices, re-queues due deliveries that lost their job, and logs progress.
    notice_sweep_seconds: float = 10.0
    # Longest one delivery job may run; also its claim's lease, after which another job may take the delivery over.
    notice_job_timeout_seconds: float = 60.0
    # Notice jobs one process runs at once, and how often an arq worker looks at the queue.
    notice_max_jobs: int = 10
    notice_poll_seconds: float = 0.5
    # Longest a job sleeps for a rate-limit slot before it gives its worker slot back and is deferred instead.
    notice_max_wait_seconds: float = 5.0
    # Failed sends are retried after this, doubling up to the cap, until the attempts run out (status failed).
    notice_retry_first_seconds: float = 5.0
    notice_retry_max_seconds: float = 1800.0
    notice_max_attempts: int = 8
    # Per-channel overrides of a channel's own send limits, as JSON:
    # {"webchat": {"per_account": 20, "per_group": 5, "window_seconds": 60, "jitter_seconds": 2}} (null: no limit).
    notice_rate_limits: RateLimits = Field("", validate_default=True)

    # --- accounts, sessions and login throttling (console and REST API, issue #8) ---
    # How long a console login lasts (absolute); then the browser logs in again.
    auth_session_hours: float = 12.0
    # Mark the session cookie Secure (HTTPS only): turn on behind TLS; the embedded default is plain http on localhost.
    auth_cookie_secure: bool = False
    # Failed logins allowed per username from one client address, and per client address for all usernames, within
    # the window; then logins from that address are refused (right password or not) until the window ends. Never per
    # username alone: guessing at `admin` from one address must not lock the owner out from another.
    # Counted in Redis with REDIS_URL, else in memory.
    auth_login_max_failures: int = 5
    auth_login_max_failures_per_address: int = 20
    auth_login_window_seconds: int = 900
    # Reverse proxies whose X-Forwarded-For / X-Real-IP say who the client is (comma-separated IPs or CIDR blocks,
    # e.g. 127.0.0.1 behind deploy/nginx.conf on the same host). Empty: trust none, the client is the TCP peer.
    # From any other peer those headers are ignored: anyone could write them.
    trusted_proxies: Networks = Field("", validate_default=True)

    # --- WeCom (企业微信) self-built app and group robots (issue #7; bot/channels/wecom/) ---
    # The channel runs when corp id, agent id, app secret, callback token and EncodingAESKey are all set.
    wecom_corp_id: str = ""
    wecom_agent_id: int | None = None
    wecom_secret: SecretStr = SecretStr("")
    # The app's 接收消息 settings in the admin console: Token and EncodingAESKey (43 characters).
    wecom_token: SecretStr = SecretStr("")
    wecom_encoding_aes_key: SecretStr = SecretStr("")
    # Where the app API and robot webhooks live (tests point it at a local stand-in).
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    # A callback whose timestamp is further than this from our clock is refused, and a nonce is remembered this
    # long (in Redis with REDIS_URL, else in memory) so a replayed request is refused too.
    wecom_replay_window_seconds: int = 300
    # Group robots, as JSON: {"<chat_groups.id of a wecom group>": "<robot key or full webhook URL>"}. Such a
    # group receives notices and replies through its robot; any other wecom group is an app chat (appchat/send).
    wecom_robots: RobotMap = Field("", validate_default=True)

    # --- wechaty: personal WeChat groups through a puppet service (issue #7; bot/channels/wechaty/) ---
    # The channel runs when the token is set; the endpoint (host:port of the puppet service) is then required too,
    # because without it python-wechaty looks the token up on a discovery host on the internet.
    wechaty_puppet_service_token: SecretStr = SecretStr("")
    wechaty_puppet_service_endpoint: str = ""
    # After the event stream drops (peer restart, network) the adapter reconnects after this, doubling to the cap.
    wechaty_reconnect_first_seconds: float = 1.0
    wechaty_reconnect_max_seconds: float = 60.0
    # A connection that logs in and stays this long resets the backoff to its first step.
    wechaty_stable_seconds: float = 30.0
    # How often the adapter pings the peer (ding/dong); silence for three times this counts as a dead connection.
    wechaty_ping_seconds: float = 20.0
    # Longest one send (or the connect before login) may take before it counts as failed.
    wechaty_send_timeout_seconds: float = 15.0
    wechaty_login_timeout_seconds: float = 30.0

    # --- WeCom smart robot (企业微信智能机器人) over its long connection (issue #27; bot/channels/wecom_aibot/) ---
    # The robot's Bot ID and Secret (admin console → 智能机器人 → the robot → API 模式: 长连接). Both set: the channel
    # runs, connecting out to WeCom (no public address or callback URL needed). WeCom keeps one connection per
    # robot, so only one app process may have these set.
    wecom_aibot_bot_id: str = ""
    wecom_aibot_secret: SecretStr = SecretStr("")
    # WeCom's WebSocket address (private WeCom deployments show their own in the admin console; tests use a local peer).
    wecom_aibot_ws_url: str = "wss://openws.work.weixin.qq.com"
    # A ping this often; two unanswered in a row count as a dead connection (the SDKs' rule).
    wecom_aibot_heartbeat_seconds: float = 30.0
    # After the connection drops the channel reconnects after this, doubling to the cap; a connection that stayed up
    # `stable` seconds resets it to the first step.
    wecom_aibot_reconnect_first_seconds: float = 1.0
    wecom_aibot_reconnect_max_seconds: float = 60.0
    wecom_aibot_stable_seconds: float = 30.0
    # How long WeCom may take to answer one of our frames (subscribe, a reply, a push) before it counts as failed.
    wecom_aibot_request_timeout_seconds: float = 10.0
    # A message is answered in place (as the robot's reply to it) within this long of its arrival, on the connection
    # it came over; later, or after a reconnect, the answer is pushed into the chat. WeCom ends a reply stream 6
    # minutes after it starts.
    wecom_aibot_reply_window_seconds: float = 300.0

    # --- personal WeChat through Tencent's official iLink bot route (ClawBot; issue #27; bot/channels/ilink/) ---
    # On: the channel runs. One-to-one chats only (no groups): each resident or worker who scans a binding QR code
    # (console → 群与网格 → 个人微信) gets a chat with the bot; bindings (bot tokens, long-poll cursors) are kept in
    # the database. Only one app process may run it (it long-polls and sends; like wechaty).
    ilink_enabled: bool = False
    # Where the QR login and the bot API live (a login may name another API base); tests point it at a local peer.
    ilink_api_base: str = "https://ilinkai.weixin.qq.com"
    # WeChat's CDN, where received pictures are fetched (encrypted) when a message gives no full URL.
    ilink_cdn_base: str = "https://novac2c.cdn.weixin.qq.com/c2c"
    # The QR code's bot_type (what the npm client asks for) and the bot_agent sent with every call (Tencent's logs).
    ilink_bot_type: str = "3"
    ilink_bot_agent: str = "GridBot/0.1"
    # WeChat takes the bot's messages to a person only within 24 h of their last message, at most 10 per message
    # of theirs. Kept a little inside the window; a refusal by WeChat closes it at once until they write again.
    ilink_reply_window_hours: float = 23.0
    ilink_messages_per_inbound: int = 10
    # Longest the server may hold a getupdates long-poll (it can suggest another); the client waits 5 s more.
    ilink_long_poll_seconds: float = 35.0
    # After a failed poll (server unreachable, unreadable answer): wait this, doubling to the cap.
    ilink_retry_first_seconds: float = 2.0
    ilink_retry_max_seconds: float = 30.0
    # A bot token WeChat calls stale (errcode -14) pauses its binding this long before polling again.
    ilink_stale_pause_seconds: float = 3600.0
    # How long one console login (up to 3 QR codes, each valid a few minutes) waits for a scan and confirmation.
    ilink_login_timeout_seconds: float = 480.0
    # Longest one call to WeChat's bot API (a send, a QR code) may take.
    ilink_send_timeout_seconds: float = 15.0

    # --- pictures received from chat platforms (served by the app at /media/<name>) ---
    # Where received pictures are kept (by content hash), and the largest one kept.
    media_dir: Path = PROJECT_ROOT / "var" / "media"
    media_max_bytes: int = 10 * 1024 * 1024
    # Prefix of the /media/… addresses stored on tickets, e.g. https://gridbot.example.org; empty: relative paths.
    media_base_url: str = ""


    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """An empty value (`WECOM_AGENT_ID=` in .env) leaves an optional number or path unset, as if not given; an
        optional text keeps "" (KB_EMBEDDING_PREFIX= means no prefix)."""
        field = cls.model_fields.get(info.field_name or "")
        if value == "" and field is not None and field.default is None and str not in get_args(field.annotation):
            return None
        return value

    # The structured settings, parsed from their documented text once, here (bot/setting_formats.py).
    _webhook_targets = field_validator("webhook_targets", mode="before")(formats.webhook_targets)
    _open311_api_keys = field_validator("open311_api_keys", mode="before")(formats.comma_separated)
    _notice_rate_limits = field_validator("notice_rate_limits", mode="before")(formats.rate_limits)
    _trusted_proxies = field_validator("trusted_proxies", mode="before")(formats.networks)
    _wecom_robots = field_validator("wecom_robots", mode="before")(formats.robots)
    _morning_digest_at = field_validator("morning_digest_at", mode="before")(formats.clock_time)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """repr and str (a traceback's locals, a debugging print) never show the password in a database or Redis URL;
        the SecretStr fields mask themselves."""
        for name, value in super().__repr_args__():
            if name in _URLS_WITH_PASSWORDS and isinstance(value, str):
                value = _without_password(value)
            yield name, value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        """LOG_LEVEL=debug and LOG_FORMAT=JSON mean what they say."""
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()


_URLS_WITH_PASSWORDS = frozenset({"database_url", "redis_url"})


def _without_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show nothing of it rather than risk the password
        return "<unreadable URL>"


@cache
def get_settings() -> Settings:
    return Settings()


class SettingsInvalid(Exception):
    """The environment (or .env) holds a setting that cannot be used; the message names each such variable."""


def load_settings() -> Settings:
    """get_settings(), with a bad value turned into one readable message (no traceback, no value: it may be secret)."""
    try:
        return get_settings()
    except ValidationError as exc:
        raise SettingsInvalid(describe(exc)) from None
    except SettingsError as exc:  # a JSON list setting (REQUEST_INTENTS…) that is not JSON
        raise SettingsInvalid(f"invalid setting: {exc}") from None


def describe(error: ValidationError) -> str:
    """One line per bad setting: its environment variable, then what is wrong."""
    lines = []
    for problem in error.errors():
        variable = str(problem["loc"][0]).upper() if problem["loc"] else "settings"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(message if message.startswith(variable) else f"{variable}: {message}")
    return "invalid settings (environment or .env):\n" + "\n".join(f"  {line}" for line in lines)


def namespace_for(settings: Settings) -> str:
    """Prefix of every Redis key the app uses (notice queue, job ids, rate limits, seen message ids).

    Derived from the database unless set: processes on the same database share jobs; two installations (or
    two test runs) sharing one Redis never run each other's jobs against the wrong database.
    """
    if settings.notice_namespace:
        return settings.notice_namespace
    url = make_url(settings.database_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        database = str(Path(database).resolve())
    identity = f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{database}"
    return "gridbot:" + hashlib.sha256(identity.encode()).hexdigest()[:10]
