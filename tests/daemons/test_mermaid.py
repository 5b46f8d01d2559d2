"""Every Mermaid diagram provisioner writes is rendered by Mermaid itself (npm mermaid in headless Chromium).

The PR comment's diagram of each reviewed change must parse, keep the DCs in site order, and draw every
node in the colour of its legend entry; capacity's charts must parse too.
"""

from __future__ import annotations

import re

import pytest

from tests import mermaid
from tests.conftest import EXAMPLE, require
from tests.helpers import run_cli
from tests.review_scenarios import SCENARIOS, prepare


@pytest.fixture(scope="module")
def renderer():
    ok, why = mermaid.available()
    require(ok, why)
    return mermaid


def classes_of(source: str) -> dict[str, str]:
    out = {}
    for ids, cls in re.findall(r"^\s*class ([A-Za-z0-9_,]+) (\w+)$", source, flags=re.M):
        for i in ids.split(","):
            out[i] = cls
    return out


def test_review_diagrams_render(renderer, tmp_path):
    comments = {}
    for name in SCENARIOS:
        site = prepare(tmp_path, name)
        code, out, err = run_cli("plan", str(site), "--against", str(EXAMPLE), "--format", "markdown")
        assert code == 0, err
        comments[name] = out
    sources = [mermaid.blocks(c)[0] for c in comments.values()]
    results = renderer.render(sources)
    for name, source, result in zip(comments, sources, results, strict=True):
        assert result["ok"], (name, result.get("error"))
        xs = [result["clusters"][f"dc_{dc}"][0] for dc in ("dc1", "dc2", "dc3")]
        assert xs == sorted(xs), (name, xs)  # site order, left to right
        legend = {cls: result["fills"][f"legend_{cls}"] for cls in ("added", "removed", "changed", "same")}
        assert len(set(legend.values())) == 4
        classes = classes_of(source)
        for node, fill in result["fills"].items():
            assert node in classes, (name, node)  # no node left in Mermaid's default colour
            assert fill == legend[classes[node]], (name, node, fill)
    # A change of all 36 racks stays a handful of nodes.
    assert len(results[list(comments).index("timers")]["fills"]) < 25


def plots(svg: str) -> tuple[list[list[tuple[float, float, str]]], list[list[float]]]:
    """Bar plots in drawing order, each a list of (x, top y, fill) per category; line plots as their y values."""
    bars, lines = [], []
    for kind, body in re.findall(r'<g class="(bar-plot-\d+|line-plot-\d+)">(.*?)</g>', svg, flags=re.S):
        if kind.startswith("bar"):
            rects = re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="[\d.]+" height="[\d.]+" fill="([^"]+)"', body)
            bars.append(sorted((float(x), float(y), fill) for x, y, fill in rects))
        else:
            (d,) = re.findall(r'<path d="([^"]+)"', body)
            lines.append([float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", d)])
    return bars, lines


def seen(bars: list[list[tuple[float, float, str]]], category: int, base_y: float) -> list[tuple[str, float]]:
    """What a reader sees in one category, bottom to top: (colour, height in pixels); later plots cover earlier."""
    tops = [plot[category][1] for plot in bars]
    out = []
    for k, plot in enumerate(bars):
        below = min(tops[k + 1:], default=base_y)  # the highest top drawn over this plot
        if below - tops[k] > 0.5:
            out.append((plot[category][2], below - tops[k]))
    return list(reversed(out))


def test_capacity_charts_render(renderer):
    """Rendered by Mermaid, the charts show what their captions say: the colours, stacks and lines."""
    code, out, _ = run_cli("capacity", str(EXAMPLE), "--add-racks", "dc1=15", "--lose-dc", "dc2",
                           "--format", "markdown")
    assert code == 0
    charts = mermaid.blocks(out)
    assert len(charts) == 2
    pool, cores = renderer.render(charts)
    assert pool["ok"] and cores["ok"], (pool.get("error"), cores.get("error"))
    blue, grey, amber, green, white = "#2563eb", "#9ca3af", "#f59e0b", "#16a34a", "#ffffff"

    # Cores: every category is a stack, bottom to top dc1 blue, dc2 amber, dc3 green, minus the DC it lacks;
    # the segments are as tall as the DC's cores (69,120 / 30,720 / 30,720 after the what-if).
    bars, lines = plots(cores["svg"])
    base = bars[-1]  # the background strip that covers zero-height bars
    assert {fill for _x, _y, fill in base} == {white}
    base_y = base[0][1]
    dcs = {"dc1": (blue, 69_120), "dc2": (amber, 30_720), "dc3": (green, 30_720)}
    px_per_core = seen(bars, 0, base_y)[0][1] / 69_120
    for category, gone in enumerate((None, "dc1", "dc2", "dc3")):
        want = [(colour, n * px_per_core) for dc, (colour, n) in dcs.items() if dc != gone]
        got = seen(bars, category, base_y)
        assert [c for c, _ in got] == [c for c, _ in want], (gone, got)
        assert all(abs(g - w) < 1.0 for (_, g), (_, w) in zip(got, want, strict=True)), (gone, got, want)
    (demand,) = lines
    assert len(set(demand)) == 1 and abs((base_y - demand[0]) - 46_000 * px_per_core) < 1.0
    tops = [min(plot[c][1] for plot in bars) for c in range(4)]
    assert all(top < demand[0] for top in tops)  # every bar reaches above the demand line: the caption says so

    # Pools: "now" all grey; "after" grey up to the same height, blue above it, past the red headroom line.
    bars, lines = plots(pool["svg"])
    base_y = bars[-1][0][1]
    now, after = seen(bars, 0, base_y), seen(bars, 1, base_y)
    assert [c for c, _ in now] == [grey] and [c for c, _ in after] == [grey, blue]
    assert abs(now[0][1] - after[0][1]) < 0.5
    (headroom,) = lines
    assert base_y - (now[0][1] + after[1][1]) < headroom[1] < base_y - now[0][1]  # after crosses the line
    assert "Red line: the headroom limit" in out and "dc1 blue, dc2 amber, dc3 green" in out


def test_render_reports_a_broken_diagram(renderer):
    (result,) = renderer.render(["flowchart TB\n  a -->>> b"])
    assert not result["ok"] and "Parse error" in result["error"]
