"""Authentication on the in-process app with real Kafka: BASIC against a users file.

(Bearer JWT and client certificates are in their own files.) Every refusal is a 401 in
Confluent's shape (40101) with a ``WWW-Authenticate`` challenge, and reaches no handler.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.v2 import V2


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written by the real CLI, as an operator would."""
    path = tmp_path_factory.mktemp("auth") / "users.txt"
    for name, password, groups in [("alice", "alice-secret", ["ops"]), ("bob", "bob-pw", [])]:
        cmd = [sys.executable, "-m", "gateway.cli", "user", "add", "--users-file", str(path)]
        cmd += [name, "--password-stdin", *(a for g in groups for a in ("--group", g))]
        done = subprocess.run(cmd, input=password + "\n", capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path


async def test_basic_authentication(make_gateway, users_file, new_topic):
    gateway = await make_gateway(
        {"authentication.method": "BASIC", "authentication.basic.users.file": str(users_file)}
    )
    topic = await new_topic(partitions=1)
    body = b'{"records":[{"value":"YQ=="}]}'
    ctype = {"Content-Type": "application/vnd.kafka.binary.v2+json"}

    async def produce(auth: str | None) -> tuple[int, dict, dict]:
        headers = {**ctype, **({"Authorization": auth} if auth else {})}
        async with gateway.post(f"/topics/{topic}", data=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None), dict(resp.headers)

    status, got, _ = await produce(basic("alice", "alice-secret"))
    assert status == 200 and got["offsets"][0]["error_code"] is None
    refused = {
        "no credentials": None,
        "wrong password": basic("alice", "nope"),
        "unknown user": basic("mallory", "alice-secret"),
        "malformed": "Basic !!!not-base64",
        "no colon": "Basic " + base64.b64encode(b"alice").decode(),
        "another scheme": "Digest username=alice",
    }
    for what, auth in refused.items():
        status, got, headers = await produce(auth)
        assert (status, got["error_code"]) == (401, 40101), (what, got)
        assert headers.get("WWW-Authenticate") == 'Basic realm="event-gateway"', what
    # Exactly one record was written: refused requests wrote nothing.
    status, got, _ = await produce(basic("bob", "bob-pw"))
    assert status == 200 and got["offsets"][0]["offset"] == 1
    # Probes stay public.
    async with gateway.get("/readyz") as resp:
        assert resp.status in (200, 503)
    # Consumer endpoints too.
    api = V2(gateway)
    status, body2, _ = await api.call("POST", "/consumers/g-auth", {"name": "c"})
    assert (status, body2["error_code"]) == (401, 40101)


def test_basic_without_a_users_file_is_a_config_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--set", "authentication.method=BASIC"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "authentication.basic.users.file" in done.stderr
    missing = tmp_path / "nope.txt"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--set",
            "authentication.method=BASIC",
            "--set",
            f"authentication.basic.users.file={missing}",
            "--set",
            "listeners=http://127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot read users file" in done.stderr
