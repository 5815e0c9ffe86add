"""The console script as a user runs it: the README's example against a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVENT_GATEWAY_")}


async def test_serve_example_properties_answers_the_readme_curl(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = await new_topic(partitions=1)
    port = free_port()
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(ROOT / "deploy" / "example.properties"),
            "--set",
            f"bootstrap.servers={kafka_bootstrap}",
            "--set",
            f"listeners=http://127.0.0.1:{port}",
            "--set",
            "rest.servlet.initializor.classes=x",  # a Confluent key we do not implement
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=ROOT,
        )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/") as resp:
                        assert (resp.status, await resp.read()) == (200, b"{}")
                        break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, log.read_text()
                    await asyncio.sleep(0.2)
            body = b'{"records":[{"key":"alice","value":{"tickets":5}},{"key":"bob","value":{"tickets":10}}]}'
            async with session.post(
                f"http://127.0.0.1:{port}/topics/{topic}",
                data=body,
                headers={"Content-Type": "application/vnd.kafka.json.v2+json"},
            ) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/vnd.kafka.v2+json"
                assert orjson.loads(await resp.read()) == {
                    "offsets": [
                        {"partition": 0, "offset": 0, "error_code": None, "error": None},
                        {"partition": 0, "offset": 1, "error_code": None, "error": None},
                    ],
                    "key_schema_id": None,
                    "value_schema_id": None,
                }
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
    text = log.read_text()
    assert "event-gateway stopped" in text
    assert "unknown configuration key 'rest.servlet.initializor.classes'" in text


def test_invalid_value_stops_startup_naming_the_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--set", "consumer.request.timeout.ms=soon"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(),
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "consumer.request.timeout.ms" in result.stderr


def test_environment_settings_are_read(tmp_path) -> None:
    props = tmp_path / "confluent.properties"
    props.write_text("listeners=http://127.0.0.1:1\n")
    env = {**_env(), "EVENT_GATEWAY_CONSUMER_REQUEST_TIMEOUT_MS": "nope"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(props)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=ROOT,
    )
    # The environment is read (its invalid value stops start-up, naming the key).
    assert result.returncode == 2 and "consumer.request.timeout.ms" in result.stderr
