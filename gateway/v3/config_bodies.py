"""The write bodies of every config family (reference 5.5), read with Jackson's rules.

``PUT .../configs/{name}`` takes ``{"value": ...}``; ``POST .../configs:alter`` takes
``{"data": [{"name", "value", "operation"}], "validate_only"}``; the multi-topic
``POST topics/-/configs:alter`` nests the same entries under ``{"topic_name", "configs"}``.
What Jackson would refuse (a wrong JSON type, an unknown enum constant) is a 400, a missing
required piece a 422/42206, an unknown field the 422 v3 answers everywhere.
"""

from __future__ import annotations

from typing import Any

from ..body import as_list, as_str, expect_object
from ..errors import bad_request
from .config_protocol import DELETE, SET, AlterOp
from .requests import payload_error

PUT_FIELDS = ("value",)
ALTER_FIELDS = ("data", "validate_only")
_ENTRY_FIELDS = ("name", "value", "operation")
_TOPIC_FIELDS = ("topic_name", "configs")
_OPERATIONS = {"SET": SET, "DELETE": DELETE}


def put_value(body: dict[str, Any]) -> str | None:
    """The new value of a PUT; null or absent is allowed (Kafka decides what null means)."""
    return as_str(body.get("value"), "value")


def validate_only(body: dict[str, Any]) -> bool:
    """Jackson's ``boolean`` coercion: JSON booleans, ``"true"``/``"false"``; null is false."""
    value = body.get("validate_only")
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    raise bad_request(
        f"Cannot deserialize value of type `boolean` from {_detail(value)} "
        "for field 'validate_only'"
    )


def alter_ops(body: dict[str, Any]) -> list[AlterOp]:
    """The ``data`` of a one-resource ``configs:alter``, in request order."""
    return _entries(body.get("data"), "data")


def topic_alters(body: dict[str, Any]) -> list[tuple[str, list[AlterOp]]]:
    """The ``data`` of ``topics/-/configs:alter``: each topic with its changes.

    A topic named twice gets both lists, in order, as one change set: Kafka refuses a
    resource named twice in one request, and the client plainly meant both.
    """
    merged: dict[str, list[AlterOp]] = {}
    for i, raw in enumerate(_required_list(body.get("data"), "data")):
        entry = expect_object(raw, _TOPIC_FIELDS, f"data[{i}]")
        topic = as_str(entry.get("topic_name"), "topic_name")
        if not topic:
            raise payload_error(f"data[{i}].topic_name is required.")
        merged.setdefault(topic, []).extend(_entries(entry.get("configs"), f"data[{i}].configs"))
    return list(merged.items())


def _entries(value: Any, where: str) -> list[AlterOp]:
    ops = []
    for i, raw in enumerate(_required_list(value, where)):
        entry = expect_object(raw, _ENTRY_FIELDS, f"{where}[{i}]")
        name = as_str(entry.get("name"), "name")
        if not name:
            raise payload_error(f"{where}[{i}].name is required.")
        operation = _operation(entry.get("operation"))
        config_value = as_str(entry.get("value"), "value") if operation == SET else None
        ops.append(AlterOp(name, operation, config_value))
    return ops


def _required_list(value: Any, where: str) -> list[Any]:
    items = as_list(value, where)
    if items is None:
        raise payload_error(f"{where} is required.")
    return items


def _operation(value: Any) -> int:
    """``SET`` (the default) or ``DELETE``; Jackson's enums are case-sensitive."""
    if value is None:
        return SET
    if isinstance(value, str) and value in _OPERATIONS:
        return _OPERATIONS[value]
    raise bad_request(
        f"Cannot deserialize value of type `AlterOperation` from {_detail(value)}: "
        "not one of the values accepted for Enum class: [SET, DELETE]"
    )


def _detail(value: Any) -> str:
    from ..errors import json_detail

    return json_detail(value)
