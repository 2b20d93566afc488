"""Worker commands typed in private chat (接单/办结/转派/上报/退回/查询 GD…, 我的工单, 帮助), handed to Rasa as intents;
and 合并 GD…新 GD…旧, which the app carries out itself.

A command is structured text, so a parser is more reliable than NLU for it; it still goes through Rasa
(`/worker_resolve{...}`) so the dialogue, its rules and its tracker see every turn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TICKET_NUMBER = re.compile(r"GD\d{8}-\d{4}", re.IGNORECASE)

# Commands that take a ticket number (and text): recognised by their first word when a ticket number follows,
# or alone (the bot then shows how to use it). "上报一下 路灯坏了" from a resident is not a command.
COMMANDS_WITH_ARGS: dict[str, str] = {
    "办结": "worker_resolve",
    "接单": "worker_accept",
    "转派": "worker_transfer",
    "上报": "worker_escalate",
    "退回": "worker_return",
    "查询": "worker_query",
}
# Commands without arguments: recognised only when they are the whole message (帮助我一下… is not one).
BARE_COMMANDS: dict[str, str] = {"我的工单": "worker_list", "帮助": "worker_help"}

_WITH_ARGS = re.compile(rf"^\s*({'|'.join(map(re.escape, COMMANDS_WITH_ARGS))})\s*(.*)$", re.DOTALL)
_TRAILING = " ：:，,。.!！?？"


@dataclass(frozen=True)
class WorkerCommand:
    intent: str
    ticket_number: str | None
    text: str

    def as_rasa_message(self) -> str:
        """Rasa's intent-trigger syntax: `/intent{"entity": "value"}`; JSON keeps quotes in the text safe."""
        entities = {"command_text": self.text}
        if self.ticket_number:
            entities["ticket_number"] = self.ticket_number
        return f"/{self.intent}{json.dumps(entities, ensure_ascii=False)}"


# 合并 GD…新 GD…旧: the app carries it out itself (bot/ticket_merge.py), so it needs no intent of Rasa's.
_MERGE = re.compile(r"^\s*合并(?:工单)?\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class MergeCommand:
    """Fold ticket `number` (the newer duplicate) into `into` (the one that handles the problem); both None when the
    command came without its two numbers (the bot then shows how to use it)."""

    number: str | None
    into: str | None


def parse_merge(text: str) -> MergeCommand | None:
    """`合并 GD20261125-0009 GD20261125-0003` → MergeCommand; 合并 with other words (合并单元格怎么弄) → None."""
    match = _MERGE.match(text)
    if match is None:
        return None
    rest = match.group(1)
    numbers = [number.upper() for number in TICKET_NUMBER.findall(rest)]
    if len(numbers) == 2 and numbers[0] != numbers[1]:
        return MergeCommand(numbers[0], numbers[1])
    words = TICKET_NUMBER.sub("", rest).strip(_TRAILING + " 到进入和与")
    return MergeCommand(None, None) if numbers or not words else None


def parse_command(text: str) -> WorkerCommand | None:
    """`办结 GD20261125-0001 路灯已更换` → WorkerCommand; text that is no command → None."""
    bare = BARE_COMMANDS.get(text.strip().strip(_TRAILING))
    if bare is not None:
        return WorkerCommand(bare, None, "")
    match = _WITH_ARGS.match(text)
    if match is None:
        return None
    word, rest = match.groups()
    number_match = TICKET_NUMBER.search(rest)
    if number_match is None and rest.strip(_TRAILING + " "):
        return None
    number = number_match.group(0).upper() if number_match else None
    remainder = TICKET_NUMBER.sub("", rest, count=1) if number_match else rest
    return WorkerCommand(COMMANDS_WITH_ARGS[word], number, remainder.strip(_TRAILING + " "))
