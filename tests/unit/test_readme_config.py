"""README's configuration table lists exactly the keys the config accepts, with their defaults.

The expected table is rendered from the declarations in ``gateway/config.py``; a failure shows
the rows to paste (``python3 -c 'import gateway.config as c; print(c.markdown_table())'``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Running against your Kafka"
PASS_THROUGH_CELL = ", ".join(f"`{p}*`" for p in config.PASS_THROUGH_PREFIXES)


def _table_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("| key |")), None)
    assert start is not None, f"no configuration table in README's {SECTION!r} section"
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def _rows() -> dict[str, tuple[str, str]]:
    """Key cell -> (default cell, meaning cell), from the README table's body."""
    out: dict[str, tuple[str, str]] = {}
    for line in _table_lines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 3, f"README table row is not `| key | default | meaning |`: {line}"
        key = cells[0].strip("`") if cells[0] != PASS_THROUGH_CELL else cells[0]
        assert key not in out, f"README table lists {key} twice"
        out[key] = (cells[1], cells[2])
    return out


def _expected_row(name: str) -> str:
    return next(r for r in config.markdown_rows() if r.startswith(f"| `{name}` |"))


def _hint() -> str:
    return "\nREADME's table should read:\n" + config.markdown_table()


def test_readme_lists_exactly_the_accepted_keys() -> None:
    listed = set(_rows()) - {PASS_THROUGH_CELL}
    missing = [k for k in config.KEYS if k not in listed]
    extra = sorted(listed - set(config.KEYS))
    problems = []
    if missing:
        problems.append("README table lacks:\n" + "\n".join(_expected_row(k) for k in missing))
    if extra:
        problems.append(f"README table lists keys the config does not accept: {extra}")
    assert not problems, "\n".join(problems)


def test_readme_defaults_are_the_config_defaults() -> None:
    rows = _rows()
    wrong = [
        _expected_row(k.name)
        for k in config.KEYS.values()
        if k.name in rows and rows[k.name][0] != config.default_cell(k.default)
    ]
    assert not wrong, "README defaults differ from the config; the rows should be:\n" + "\n".join(
        wrong
    )


def test_readme_lists_the_pass_through_prefixes() -> None:
    assert PASS_THROUGH_CELL in _rows(), f"README table lacks the row for {PASS_THROUGH_CELL}"


def test_readme_table_is_the_rendered_table() -> None:
    """Order and meanings too: the table is exactly what the declarations render."""
    assert _table_lines() == config.markdown_table().splitlines(), _hint()


@pytest.mark.parametrize("key", list(config.KEYS.values()), ids=lambda k: k.name)
def test_meaning_is_one_table_cell(key: config.Key) -> None:
    assert key.doc and "|" not in key.doc and "\n" not in key.doc
