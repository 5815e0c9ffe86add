"""The console script as a user runs it: the README's example against a real broker, and the
package as pip builds it (the dev broker's files must travel in the wheel)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway import cli
from gateway.cli import dev
from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
BROKER_SOURCE = ROOT / "gateway" / "cli" / "broker"


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


def test_dev_topic_option() -> None:
    args = cli._parser().parse_args(["dev", "--topic", "orders:3", "--topic", "sales"])
    assert args.topics == [("orders", 3), ("sales", 1)]
    assert cli._parser().parse_args(["dev"]).topics == []


@pytest.mark.parametrize(
    "spec", ["", ":3", "bad name", "a/b", "..", "t:0", "t:-1", "t:x", "x" * 250]
)
def test_dev_topic_option_refuses_what_kafka_would(spec: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli._parser().parse_args(["dev", "--topic", spec])
    assert exc.value.code == 2
    assert "--topic" in capsys.readouterr().err


# --- the wheel --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel --no-deps`` of a copy of the checkout (an in-tree build would leave build/
    behind, whose stale files a later build could pick up)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests"
        ),
    )
    out = tmp / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        check=False,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (built,) = out.glob("event_gateway-*.whl")
    return built


def test_wheel_carries_the_dev_broker_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        for name in dev.BROKER_FILES:
            member = f"gateway/cli/broker/{name}"
            assert member in names, f"{member} missing from {wheel.name}"
            assert whl.read(member) == (BROKER_SOURCE / name).read_bytes()
        assert {"gateway/cli/__init__.py", "gateway/cli/__main__.py", "gateway/cli/dev.py"} <= names
        # The live topic page GET /ui/stream serves (ui.enabled).
        assert "gateway/ui/stream.html" in names
        assert not {"gateway/cli.py", "gateway/devmode.py"} & names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "event-gateway = gateway.cli:main" in whl.read(entry_points).decode()


_RESOLVE = """
import json, sys, tempfile
from pathlib import Path
import gateway.cli.dev as dev
folder = dev.broker_dir(Path(tempfile.mkdtemp()))
print(json.dumps({
    "module": dev.__file__,
    "resource": str(dev.broker_files()),
    "folder": str(folder),
    "files": {n: (folder / n).read_text() for n in dev.BROKER_FILES},
}))
"""


def _resolve_from(path_entry: Path, cwd: Path) -> dict:
    """Import the dev module from ``path_entry`` alone (not this checkout) and let it find its
    broker files through importlib.resources."""
    env = {**os.environ, "PYTHONPATH": str(path_entry)}
    done = subprocess.run(
        [sys.executable, "-c", _RESOLVE],
        cwd=cwd,  # not the checkout, whose gateway/ would be found first
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_installed_wheel_resolves_broker_files(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)  # a pure-Python wheel's install is its unpacked tree
    found = _resolve_from(site, tmp_path)
    assert Path(found["module"]).is_relative_to(site)
    assert Path(found["folder"]) == site / "gateway" / "cli" / "broker"
    assert found["files"] == {n: (BROKER_SOURCE / n).read_text() for n in dev.BROKER_FILES}
    # The script runs from there: without arguments it prints its usage and exits 2.
    usage = subprocess.run(
        ["bash", str(site / "gateway" / "cli" / "broker" / "kafka.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert usage.returncode == 2 and "kafka.sh jars" in usage.stderr


def test_zipped_wheel_resolves_broker_files(wheel: Path, tmp_path: Path) -> None:
    """Imported straight from the wheel (a zip): the files are copied out to a real folder."""
    found = _resolve_from(wheel, tmp_path)
    assert Path(found["module"]).is_relative_to(wheel)
    assert not Path(found["folder"]).is_relative_to(wheel)
    assert found["files"] == {n: (BROKER_SOURCE / n).read_text() for n in dev.BROKER_FILES}


def test_deploy_kafka_sh_forwards_to_the_package_copy(tmp_path: Path) -> None:
    """deploy/kafka/kafka.sh (CI, the test harness) runs the packaged script: one copy only."""
    assert sorted(p.name for p in (ROOT / "deploy" / "kafka").iterdir()) == ["kafka.sh"]
    usage = subprocess.run(
        ["bash", str(ROOT / "deploy" / "kafka" / "kafka.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert usage.returncode == 2
    assert "kafka.sh start" in usage.stderr and "--set K=V" in usage.stderr
