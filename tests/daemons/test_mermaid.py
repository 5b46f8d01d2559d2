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


def test_capacity_charts_render(renderer):
    code, out, _ = run_cli("capacity", str(EXAMPLE), "--add-racks", "dc1=15", "--lose-dc", "dc2",
                           "--format", "markdown")
    assert code == 0
    charts = mermaid.blocks(out)
    assert charts
    for result in renderer.render(charts):
        assert result["ok"], result.get("error")


def test_render_reports_a_broken_diagram(renderer):
    (result,) = renderer.render(["flowchart TB\n  a -->>> b"])
    assert not result["ok"] and "Parse error" in result["error"]
