"""The ``/v1`` error shapes, one for every refusal so that any client can read them:

- a refused field (422, and 409 for an idempotency key reused with another body):
  ``{"detail": [{"loc": ["body", "to", 3], "msg": "...", "type": "..."}]}``, FastAPI's own shape, with
  ``loc`` naming the field (``body``, ``query``, ``header``, ``path`` or ``form`` first);
- anything else (401, 403, 404, 409, 413, 503): ``{"detail": "one line"}``.

What the caller sent is never echoed back (pydantic's ``input``): it may hold phone numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, Field

from tasks.request import FieldProblem, InvalidRequest

Loc = list[str | int]
_FIELD = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*")  # a field's path as our messages spell it: to.3.phone
_PARTS = re.compile(r"; (?=[A-Za-z_][\w.-]*: )")  # "; " before the next problem's field


class Problem(BaseModel):
    """One refused field."""

    loc: Loc = Field(examples=[["body", "params", "code"]])
    msg: str = Field(examples=["missing code"])
    type: str = Field(examples=["invalid_request"])


class Problems(BaseModel):
    """A refused request: each problem names its field."""

    detail: list[Problem]


class Message(BaseModel):
    """Any other refusal, in one line."""

    detail: str


def path(field: str, where: str = "body") -> Loc:
    """``to.3.phone`` as ``["body", "to", 3, "phone"]``."""
    return [where, *(int(part) if part.isdecimal() else part for part in field.split("."))]


def from_pydantic(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """pydantic's (FastAPI's) errors with their real field and a plain message; no ``input``/``ctx``."""
    problems = []
    for error in errors:
        loc: Loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        msg = str(error.get("msg", "")).removeprefix("Value error, ")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):  # our validators name the field inside the message
            loc = path(cause.field, str(loc[0]) if loc else "body")
            msg = msg.removeprefix(f"{cause.field}: ")
        problems.append({"loc": loc, "msg": msg, "type": str(error.get("type", "value_error"))})
    return problems


def from_invalid(
    exc: InvalidRequest, where: str = "body", kind: str = "invalid_request"
) -> list[dict[str, Any]]:
    """``InvalidRequest("to.3: bad; params: missing code")`` as one problem per part (parts are split
    where a field's name follows ``; ``). The field is the first ``name:`` of the part
    (``template 'x': params: missing code`` names ``params``); none: the body as a whole."""
    problems = []
    for part in _PARTS.split(str(exc)):
        heads = part.split(": ")[:-1]
        field = next((head for head in heads if _FIELD.fullmatch(head)), "")
        msg = part.removeprefix(f"{field}: ") if field and heads[0] == field else part
        problems.append({"loc": path(field, where) if field else [where], "msg": msg, "type": kind})
    return problems


def refused(status: int, problems: Sequence[dict[str, Any]]) -> HTTPException:
    """An HTTP error whose body is ``{"detail": problems}``."""
    return HTTPException(status, detail=list(problems))


def field_error(status: int, loc: Loc, msg: str, kind: str) -> HTTPException:
    return refused(status, [{"loc": loc, "msg": msg, "type": kind}])
