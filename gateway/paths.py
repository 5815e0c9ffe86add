"""Path pieces shared by the v2 resources: ``{partition}``, and consumer group / instance names.

Confluent's path parameter is a Java ``int``: anything else (``abc``, ``1.5``, a number past
2**31) does not match the route, so the client gets a plain ``HTTP 404 Not Found`` rather than
a validation error. The route pattern does most of that; :func:`path_partition` the range.

Group and instance names are bounded (length, no control characters) when an instance is
created (422, see :func:`check_name`); a path naming one that could never have been created
is simply not found (404 / 40403), answered without asking the session store about it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from aiohttp import web

from .errors import GatewayError, bad_request, unprocessable

PARTITION = r"{partition:-?\d+}"

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

# Kafka bounds neither; 255 is what its own tooling and most stores a group id ends up in
# (ACL resource names, metrics tags, file names in some exporters) handle without surprises.
MAX_NAME = 255
# C0 and C1 controls and DEL: invisible in logs, and a newline in a name forges log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def path_partition(request: web.Request) -> int:
    value = int(request.match_info["partition"])
    if not _INT_MIN <= value <= _INT_MAX:
        raise web.HTTPNotFound()
    return value


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a consumer group or instance, or None if it can."""
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is {len(name)} characters long, the limit is {MAX_NAME}"
    if _CONTROL.search(name):
        return "it contains control characters"
    return None


def check_name(kind: str, name: str) -> str:
    """``name`` for a consumer ``kind`` ("group", "instance") to be created, else 422."""
    problem = name_problem(name)
    if problem is not None:
        raise unprocessable(f"Invalid consumer {kind} name {name[:MAX_NAME]!r}: {problem}")
    return name


def check_path_utf8(request: web.Request) -> None:
    """400 for a path whose percent-escapes are not UTF-8.

    aiohttp leaves such an escape undecoded (``%FF`` stays the three characters ``%FF``), so
    without this the name would silently be a different one than the client sent.
    """
    raw = request.raw_path.partition("?")[0]
    if "%" not in raw:
        return
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request path is not valid UTF-8 once percent-decoded") from None


def instance_names(request: web.Request) -> tuple[str, str]:
    """(group, instance) of an instance path; 404 / 40403 for names no instance can have."""
    check_path_utf8(request)
    group, name = request.match_info["group"], request.match_info["instance"]
    if name_problem(group) is not None or name_problem(name) is not None:
        raise GatewayError(404, 40403, "Consumer instance not found.")
    return group, name


def create_group(request: web.Request) -> str:
    """The group of ``POST /consumers/{group}``, checked as a name to be created."""
    check_path_utf8(request)
    return check_name("group", request.match_info["group"])
