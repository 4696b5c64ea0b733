"""``polysock bench`` runs for real (tiny sizes): processes, sockets, the scenario hook, JSON.

Figures are not judged here (speed is measured by the benchmark, not by tests); what is
checked is that every side ran the asked workload and that the report says what it measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polysock import bench, plugins
from polysock.bench import BenchScenario
from polysock.hookspecs import hookimpl

pytestmark = pytest.mark.timeout(180)

# ------------------------------------------------------------------ a scenario, as a flavour
# would write it: plain blocking sockets standing in for a flavour's public API.


def echo_scenario_server(params: dict[str, int]) -> tuple[int, Callable[[], None]]:
    lsock = socket.create_server(("127.0.0.1", 0))
    served = threading.Event()

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
        lsock.close()
        served.set()

    threading.Thread(target=serve, daemon=True).start()

    def finish() -> None:
        if not served.wait(60):
            raise TimeoutError("the scenario client never finished")

    return lsock.getsockname()[1], finish


def echo_scenario_client(params: dict[str, int], port: int) -> dict[str, Any]:
    import time

    size, n = params["size"], params["n"]
    payload = b"y" * size
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        for _ in range(n):
            s.sendall(payload)
            got = 0
            while got < size:
                got += len(s.recv(size - got))
        elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "count": n}


class ScenarioPlugin:
    @hookimpl
    def polysock_add_bench_scenarios(self) -> list[BenchScenario]:
        return [
            BenchScenario(
                name="echo 16 B ping-pong",
                flavour="testflavour",
                baseline="W2",
                server=f"{__name__}:echo_scenario_server",
                client=f"{__name__}:echo_scenario_client",
                params={"n": 300, "size": 16},
                target=0.5,
            )
        ]


@pytest.fixture
def scenario_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POLYSOCK_NO_AUTOLOAD", "1")  # installed flavours add scenarios too
    plugins.reset()
    plugins.register(ScenarioPlugin(), "testflavour")
    yield
    plugins.reset()


def test_scenarios_are_collected_through_the_hook(scenario_plugin: None) -> None:
    (sc,) = bench.collect_scenarios()
    assert (sc.flavour, sc.baseline, sc.params["n"]) == ("testflavour", "W2", 300)


def test_a_flavour_scenario_is_measured_against_its_raw_baseline(scenario_plugin: None) -> None:
    lines: list[str] = []
    rows = bench.run([], runs=1, progress=lines.append, zmq=False,
                     scenarios=bench.collect_scenarios())
    (row,) = rows
    assert row.key == "testflavour:" and row.title == "echo 16 B ping-pong"
    assert row.unit == "rt/s" and row.target == 0.5
    assert row.raw > 0 and row.core > 0
    assert row.ratio == pytest.approx(row.core / row.raw)
    assert "raw_p50_us" in row.extra  # the baseline's latency figures are kept
    assert lines == ["testflavour: echo 16 B ping-pong: run 1/1, raw",
                     "testflavour: echo 16 B ping-pong: run 1/1, core"]


def test_cli_json_report_includes_builtin_workloads_and_scenarios(
    scenario_plugin: None, capsys: Any
) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["-w", "W2", "--quick", "--runs", "1", "--json", "--no-zmq"])
    assert bench.run_from_args(args) == 0
    report = json.loads(capsys.readouterr().out)
    names = [(r["workload"], r["title"]) for r in report["results"]]
    assert names == [("W2", "32 B ping-pong, 1 CPU"), ("testflavour:", "echo 16 B ping-pong")]
    for r in report["results"]:
        assert r["raw"] > 0 and r["polysock"] > 0 and r["pyzmq"] is None
        assert r["ratio"] == pytest.approx(r["polysock"] / r["raw"])


@pytest.mark.skipif(importlib.util.find_spec("zmq") is None, reason="pyzmq not installed")
def test_pyzmq_column_when_installed() -> None:
    (row,) = bench.run(["W1"], runs=1, quick=True, zmq=True)
    assert row.zmq is not None and row.zmq > 0
    assert row.zmq_ratio == pytest.approx(row.core / row.zmq)
    table = bench.format_table([row], 1)
    assert "| pyzmq | vs pyzmq |" in table
    assert f"{row.zmq_ratio:.2f}x" in table
