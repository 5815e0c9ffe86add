"""Pure logic of ``workers=N``: sibling names, the CPU count, the merged metrics text."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import config as configmod
from gateway.workers.cpus import available_cpus, cgroup_quota
from gateway.workers.identity import WorkerIdentity
from gateway.workers.metrics_merge import merge

REDIS = {"session.store.url": "redis://127.0.0.1:6379/0", "cluster.secret": "s"}


def test_identity_travels_through_the_environment_unchanged() -> None:
    w = WorkerIdentity(1, 3, "ab12cd34", "/tmp/event-gateway-workers-x/y")
    assert WorkerIdentity.decode(w.encode()) == w


def test_sibling_is_known_by_token_and_index() -> None:
    me = WorkerIdentity(0, 2, "ab12cd34", "/run/w")
    sibling = WorkerIdentity(1, 2, "ab12cd34", "/run/w")
    node = sibling.node_name("10.0.0.5:8082") + ":0123456789ab"
    assert me.sibling_socket(node) == "/run/w/w1.sock"
    # Itself, another replica's worker 1, an earlier start's worker 1, a replica without
    # workers, and an index past the count are no siblings.
    assert me.sibling_socket(me.node_name("10.0.0.5:8082") + ":0123456789ab") is None
    assert me.sibling_socket("10.0.0.6:8082:ffff0000.w1:0123456789ab") is None
    assert me.sibling_socket("10.0.0.5:8082:00000000.w1:0123456789ab") is None
    assert me.sibling_socket("10.0.0.5:8082:0123456789ab") is None
    assert me.sibling_socket("10.0.0.5:8082:ab12cd34.w7:0123456789ab") is None
    assert me.sibling_socket("") is None


def test_slots_differ_per_worker_on_one_url() -> None:
    a, b = WorkerIdentity(0, 2, "t", "/r"), WorkerIdentity(1, 2, "t", "/r")
    assert a.slot("http://h:1") != b.slot("http://h:1")
    # ... and are stable across starts (new token), so a successor finds its predecessor.
    assert a.slot("http://h:1") == WorkerIdentity(0, 2, "other", "/r2").slot("http://h:1")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000"}, None),
        ({"cpu.max": "150000 100000"}, 1.5),
        ({"cpu.max": "50000 100000"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    assert cgroup_quota(tmp_path) == expected


def test_available_cpus_rounds_a_quota_up_and_never_says_zero(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert available_cpus(tmp_path) == min(2, available_cpus(tmp_path / "none"))
    (tmp_path / "cpu.max").write_text("1000 100000\n")
    assert available_cpus(tmp_path) == 1


def test_worker_count() -> None:
    assert configmod.from_properties({}).worker_count == 1  # memory://: one process
    assert configmod.from_properties({"workers": "auto"}).worker_count == 1
    assert configmod.from_properties({**REDIS, "workers": "3"}).worker_count == 3
    assert configmod.from_properties({**REDIS}).worker_count == available_cpus()
    with pytest.raises(configmod.ConfigError, match="workers"):
        configmod.from_properties({"workers": "2"})
    with pytest.raises(configmod.ConfigError, match="workers"):
        configmod.from_properties({**REDIS, "workers": "-1"})


W0 = """\
# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{route="/topics",status="200"} 3.0
# HELP up Whether up.
# TYPE up gauge
up 1.0
# HELP empty Labels present but empty.
# TYPE empty gauge
empty{} 2.0
"""
W1 = """\
# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{route="/topics",status="200"} 5.0
requests_total{route="/topics",status="404"} 1.0
# HELP up Whether up.
# TYPE up gauge
up 1.0
# HELP empty Labels present but empty.
# TYPE empty gauge
empty{} 4.0
"""


def test_merge_declares_each_family_once_and_labels_every_sample() -> None:
    text = merge({1: W1, 0: W0})
    lines = text.splitlines()
    assert sum(line.startswith("# TYPE requests_total") for line in lines) == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}  # parses as valid
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert got[("requests_total", (("route", "/topics"), ("status", "200"), ("worker", "0")))] == 3
    assert got[("requests_total", (("route", "/topics"), ("status", "200"), ("worker", "1")))] == 5
    assert got[("up", (("worker", "0"),))] == 1 and got[("up", (("worker", "1"),))] == 1
    assert got[("empty", (("worker", "1"),))] == 4
    # Samples of a family stay together, worker 0 first.
    req = [i for i, line in enumerate(lines) if line.startswith("requests_total")]
    assert req == list(range(req[0], req[0] + 3))
    assert 'worker="0"' in lines[req[0]]
