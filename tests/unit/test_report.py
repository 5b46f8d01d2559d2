"""Tables: plain text in pipes (stable), rich on a terminal, never truncating a value."""

from __future__ import annotations

from provisioner import report

HEAD = ("pool", "cidr", "largest free block")
ROWS = [("pods-a", "10.100.0.0/14", "304 from 10.102.208.0/24"), ("all", "", "304")]


def test_plain_table_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr(report, "_interactive", lambda: False)
    out = report.text_table(HEAD, ROWS).splitlines()
    assert out[0].split() == ["pool", "cidr", "largest", "free", "block"]
    assert set(out[1]) <= {"-", " "}
    assert out[2].split() == ["pods-a", "10.100.0.0/14", "304", "from", "10.102.208.0/24"]


def test_rich_table_on_a_terminal_keeps_every_value_whole(monkeypatch):
    monkeypatch.setattr(report, "_interactive", lambda: True)
    wide = [(f"pool-{i}", f"10.{i}.0.0/16", "x" * 60) for i in range(3)]
    out = report.text_table(HEAD, ROWS + wide)
    for row in ROWS + wide:
        for value in row:
            assert value in out
    assert "…" not in out
