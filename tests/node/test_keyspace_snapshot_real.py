"""Real processes: a clean stop saves the keyspace snapshot, the next start loads it
(and forgets it), and a start after kill -9 reads the records instead."""

from __future__ import annotations

from pathlib import Path

from tests.procs import Server, http

SNAPSHOT = "keyspace.snapshot"


def _write(s: Server, n: int, tag: str) -> None:
    ops = [{"op": "registers.set", "key": f"k{i}", "value": f"{tag}{i}"} for i in range(n)]
    ops += [{"op": "counters.incr", "key": f"c{i}", "delta": i} for i in range(n)]
    ops += [{"op": "sets.add", "key": f"s{i}", "members": ["a", tag]} for i in range(n)]
    code, body = http("POST", s.url + "/v1/batch", {"ops": ops})
    assert code == 200 and all("error" not in r for r in body["results"]), body


def _check(s: Server, n: int, tag: str, members: set[str]) -> None:
    for i in (0, n // 2, n - 1):
        assert s.get(f"/v1/registers/k{i}")[1]["value"] == f"{tag}{i}"
        assert s.get(f"/v1/counters/c{i}")[1]["value"] == i * (2 if tag == "w" else 1)
        assert s.get(f"/v1/sets/s{i}")[1]["members"] == sorted(members)


def test_a_clean_stop_saves_the_keyspace_and_the_next_start_loads_it(tmp_path: Path) -> None:
    s = Server("r1", tmp_path / "d")
    snapshot = s.data_dir / SNAPSHOT
    try:
        s.start()
        _write(s, 300, "v")
        assert s.stop() == 0
        assert snapshot.is_file()
        s.start()
        assert not snapshot.exists()  # a start forgets it: it no longer matches
        _check(s, 300, "v", {"a", "v"})
        log = s.log_path.read_text()
        assert "keyspace snapshot of" in log and "reading the records" not in log
        _write(s, 300, "w")  # then a crash: the next start reads the records
        s.kill9()
        s.start()
        _check(s, 300, "w", {"a", "v", "w"})
        assert s.stop() == 0
        s.start()
        _check(s, 300, "w", {"a", "v", "w"})
    finally:
        if s.running():
            s.kill9()
