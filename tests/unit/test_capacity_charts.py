"""The data behind capacity's two Mermaid charts: what each bar and line stands for.

Pool chart: per pool a "now" bar (the lock) and an "after" bar (the what-if), drawn blue with the "now" share
in grey on top, and the CAP001 headroom limit as a line. Cores chart: the site with every DC and without each
one (N-1), stacked per DC, with the declared demand as a line. Mermaid draws later bar series over earlier
ones, so the visible segment of series k is the difference to the series drawn after it; these tests read the
charts that way and compare with numbers computed here from the raw YAML. tests/daemons/test_mermaid.py
renders the same charts with Mermaid and checks the drawn geometry and colours.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from provisioner.commands.capacity import DC_COLOURS, cores_chart_data, pool_chart_data
from provisioner.report import nice_ceiling, xychart
from tests.conftest import EXAMPLE
from tests.helpers import run_cli


def report(*args: str, code: int = 0) -> dict:
    rc, out, err = run_cli("capacity", str(EXAMPLE), "--format", "json", *args)
    assert rc == code, err + out
    return json.loads(out)


def raw() -> tuple[dict, dict]:
    return (yaml.safe_load((EXAMPLE / "site.yaml").read_text()),
            yaml.safe_load((EXAMPLE / "allocations.yaml").read_text()))


def visible_segments(series: list[tuple[str, list[float], str]], category: int) -> list[tuple[str, float]]:
    """(colour, height) of each bar segment one sees in a category, bottom to top."""
    bars = [(colour, values[category]) for kind, values, colour in series if kind == "bar"]
    drawn_over = [*[h for _c, h in bars[1:]], 0.0]
    segments = [(colour, h - below) for (colour, h), below in zip(bars, drawn_over, strict=True)]
    return [s for s in reversed(segments) if s[1] > 0]


def test_pool_chart_shows_now_after_and_the_headroom_line():
    site, lock = raw()
    (pool,) = site["address_plan"]["pod_pools"]
    size = 2 ** (pool["node_prefix_len"] - int(pool["cidr"].split("/")[1]))
    now = len(lock["pod_cidrs"])
    largest_rack = max(sum(g["count"] for g in r["node_groups"]) for dc in site["dcs"] for r in dc["racks"])
    (spec,) = pool_chart_data(report("--add-racks", "dc1=15"))
    after = now + 15 * 20
    assert spec["labels"] == [f"now: {now:,}", f"after: {after:,}"]
    assert pool["name"] in spec["title"] and f"{size:,} /24s" in spec["title"]
    assert spec["y_max"] == 100
    pct = lambda n: round(100 * n / size, 1)  # noqa: E731
    grey, blue = "#9ca3af", "#2563eb"
    assert visible_segments(spec["series"], 0) == [(grey, pct(now))]  # now: the lock only
    assert visible_segments(spec["series"], 1) == [(grey, pct(now)), (blue, pytest.approx(pct(after) - pct(now)))]
    (line,) = [values for kind, values, _ in spec["series"] if kind == "line"]
    assert line == [pct(size - largest_rack)] * 2  # CAP001: keep one largest rack free
    assert pct(after) > line[0]  # 1,020 of 1,024 is past the limit: the chart shows why it warns
    assert f"fewer than {largest_rack} node prefixes free" in spec["caption"] and "the what-if" in spec["caption"]


def test_pool_chart_follows_min_free_per_pool():
    (spec,) = pool_chart_data(report("--min-free-per-pool", "512"))
    (line,) = [values for kind, values, _ in spec["series"] if kind == "line"]
    assert line == [50.0, 50.0]
    assert "(--min-free-per-pool; CAP001)" in spec["caption"] and "next render" in spec["caption"]


def test_one_pool_chart_per_pool(tmp_path):
    """Mermaid joins a line's points, so pools never share a chart (a slope between pools would mean nothing)."""
    site_dir = tmp_path / "example"
    shutil.copytree(EXAMPLE, site_dir)
    text = (site_dir / "site.yaml").read_text()
    first = "    - {name: pods-a, cidr: 10.100.0.0/14, node_prefix_len: 24}"
    assert first in text
    extra = "\n    - {name: pods-b, cidr: 10.104.0.0/20, node_prefix_len: 24, dcs: [dc3]}"
    (site_dir / "site.yaml").write_text(text.replace(first, first + extra, 1))
    rc, out, err = run_cli("capacity", str(site_dir), "--add-racks", "dc3=17", "--format", "json")
    assert rc == 1, err  # pods-a runs out; pods-b takes 16 of the new nodes
    a, b = pool_chart_data(json.loads(out))
    assert "pods-a" in a["title"] and "pods-b (10.104.0.0/20, dc3)" in b["title"]
    assert b["labels"] == ["now: 0", "after: 16"]
    for spec in (a, b):
        (line,) = [values for kind, values, _ in spec["series"] if kind == "line"]
        assert len(set(line)) == 1
    # pods-b (16 /24s) is smaller than the largest rack (20): no use of it keeps one rack free.
    assert [values for kind, values, _ in b["series"] if kind == "line"] == [[0.0, 0.0]]


def per_dc_cores(site: dict) -> dict[str, int]:
    return {dc["name"]: sum(g["count"] * site["hardware"][g["hardware"]]["cores"]
                            for r in dc["racks"] for g in r["node_groups"]) for dc in site["dcs"]}


def test_cores_chart_stacks_dcs_and_draws_the_demand():
    site, _ = raw()
    cores = per_dc_cores(site)
    dcs = list(cores)
    spec = cores_chart_data(report("--lose-dc", "dc2"))
    assert spec["labels"] == ["all DCs", "without dc1", "without dc2 (what-if)", "without dc3"]
    colour = {dc: hexa for dc, (_name, hexa) in zip(dcs, DC_COLOURS, strict=False)}
    assert visible_segments(spec["series"], 0) == [(colour[d], cores[d]) for d in dcs]
    for i, gone in enumerate(dcs, start=1):
        assert visible_segments(spec["series"], i) == [(colour[d], cores[d]) for d in dcs if d != gone]
    (line,) = [values for kind, values, _ in spec["series"] if kind == "line"]
    assert line == [site["demand"]["cores"]] * 4
    assert spec["y_max"] >= sum(cores.values()) and spec["y_max"] == nice_ceiling(sum(cores.values()) * 1.05)
    assert "dc1 blue, dc2 amber, dc3 green" in spec["caption"] and "every bar carries it" in spec["caption"]


def test_cores_chart_names_the_bars_below_the_demand(tmp_path):
    site_dir = tmp_path / "example"
    site_dir.mkdir()
    text = (EXAMPLE / "site.yaml").read_text()
    assert "demand:\n  cores: 46000\n" in text
    text = text.replace("demand:\n  cores: 46000\n", "demand:\n  cores: 70000\n")
    (site_dir / "site.yaml").write_text(text)
    (site_dir / "allocations.yaml").write_text((EXAMPLE / "allocations.yaml").read_text())
    rc, out, err = run_cli("capacity", str(site_dir), "--format", "json")
    assert rc == 0, err
    spec = cores_chart_data(json.loads(out))
    assert "(without dc1, without dc2, without dc3)" in spec["caption"]


def test_cores_chart_without_demand_has_no_line():
    data = report()
    data["compute"]["demand"] = None
    spec = cores_chart_data(data)
    assert [kind for kind, _, _ in spec["series"]] == ["bar"] * 3
    assert "No demand is declared" in spec["caption"]


def test_xychart_covers_the_zero_strip_and_names_every_colour():
    text = xychart("t", ["a", "b"], "y", 10, [("bar", [5, 0], "#111111"), ("line", [3, 3], "#222222")])
    body = text.splitlines()
    init = json.loads(body[1].removeprefix("%%{init: ").removesuffix("}%%"))
    palette = init["themeVariables"]["xyChart"]["plotColorPalette"].split(", ")
    plots = [line.split()[0] for line in body if line.startswith("    bar") or line.startswith("    line")]
    # a zero bar in the background colour comes last among the bars; lines are drawn over everything
    assert plots == ["bar", "bar", "line"] and palette == ["#111111", "#ffffff", "#222222"]
    assert "    bar [0, 0]" in body and body[-1] == "```"


@pytest.mark.parametrize(("value", "top"), [(0, 1), (7, 8), (10, 10), (11, 12), (99, 100), (137_088, 150_000),
                                            (96_768, 100_000), (250_001, 300_000)])
def test_nice_ceiling(value, top):
    assert nice_ceiling(value) == top
