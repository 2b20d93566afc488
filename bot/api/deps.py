"""What every route needs from the running app: its services, built once at start-up."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bot.runtime import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
