"""Worker commands typed in private chat (办结 GD… 结果). Parsed exactly, then handed to Rasa as an intent.

A command is structured text, so a parser is more reliable than NLU for it; it still goes through Rasa
(`/worker_resolve{...}`) so the dialogue, its rules and its tracker see every turn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TICKET_NUMBER = re.compile(r"GD\d{8}-\d{4}", re.IGNORECASE)

# command word → Rasa intent
COMMANDS: dict[str, str] = {
    "办结": "worker_resolve",
}

_COMMAND = re.compile(rf"^\s*({'|'.join(map(re.escape, COMMANDS))})\s*(.*)$", re.DOTALL)


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


def parse_command(text: str) -> WorkerCommand | None:
    """`办结 GD20261125-0001 路灯已更换` → WorkerCommand; anything not starting with a command word → None."""
    match = _COMMAND.match(text)
    if match is None:
        return None
    word, rest = match.groups()
    number_match = TICKET_NUMBER.search(rest)
    number = number_match.group(0).upper() if number_match else None
    remainder = TICKET_NUMBER.sub("", rest, count=1) if number_match else rest
    return WorkerCommand(COMMANDS[word], number, remainder.strip(" ：:，,"))
