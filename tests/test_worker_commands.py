"""A worker's day in private chat, through the trained Rasa server: 接单, 转派, 上报, 退回, 查询."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from grid.tickets import Ticket
from tests.servers import Chat
from tests.test_slice import WORKER, _file_ticket, _to

pytestmark = pytest.mark.rasa


def _worker_says(chat: Chat, text: str, worker: tuple[str, str] = WORKER) -> list[dict[str, str]]:
    return chat.say(text, group=None, sender=worker[0], name=worker[1])


def test_transfer_then_the_new_worker_escalates(
    chat: Chat, resident: tuple[str, str], session_factory: sessionmaker[Session]
) -> None:
    sender, name = resident
    number = _file_ticket(chat, sender, name)
    moved = _worker_says(chat, f"转派 {number} 李强 那边是二网格的")
    assert any("李强" in text for text in _to(moved, WORKER[0])), moved
    assert any(number in text and "转派" in text for text in _to(moved, "worker-2")), moved

    up = _worker_says(chat, f"上报 {number} 城管执法局 需要执法队处理", worker=("worker-2", "李强"))
    assert any("城管执法局" in text for text in _to(up, "worker-2")), up
    history = _to(_worker_says(chat, f"查询 {number}", worker=("worker-2", "李强")), "worker-2")
    assert history and "转派" in history[0] and "上报部门" in history[0] and "需要执法队处理" in history[0]
    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None and (ticket.status, ticket.department_code, ticket.grid_code) == (
            "escalated",
            "dept-urban",
            "grid-2",
        )


def test_return_goes_to_the_lead_and_refusals_are_plain_chinese(chat: Chat, resident: tuple[str, str]) -> None:
    sender, name = resident
    number = _file_ticket(chat, sender, name)
    refused = _to(_worker_says(chat, f"退回 {number} 不归我", worker=("worker-3", "王芳")), "worker-3")
    assert refused and "不是派给您的" in refused[0]
    back = _worker_says(chat, f"退回 {number} 这是物业的事")
    assert any("陈书记" in text for text in _to(back, WORKER[0])), back
    assert any("这是物业的事" in text for text in _to(back, "lead-1")), back
    usage = _to(_worker_says(chat, "转派"), WORKER[0])
    assert usage and "格式" in usage[0]
