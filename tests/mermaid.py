"""Render Mermaid diagrams with Mermaid itself (npm ``mermaid``) in Debian's headless Chromium.

scripts/setup installs both (``chromium`` as a Debian package with --system, ``mermaid`` with npm into
``.tools/mermaid``, git-ignored). Nothing is downloaded at test time. ``render`` returns, per diagram,
either the SVG Mermaid produced or its parse/render error; ``screenshot`` writes a PNG to look at.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MERMAID_JS = ROOT / ".tools" / "mermaid" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--allow-file-access-from-files", "--hide-scrollbars")

PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:0;background:#fff">
<div id="out"></div>
<script src="{js}"></script>
<script>
mermaid.initialize({{startOnLoad: false, securityLevel: "strict"}});
const diagrams = {diagrams};
(async () => {{
  const results = [];
  for (let i = 0; i < diagrams.length; i++) {{
    try {{
      const r = await mermaid.render("d" + i, diagrams[i]);
      const holder = document.createElement("div");
      holder.innerHTML = r.svg;
      document.getElementById("out").appendChild(holder);
      const clusters = {{}};
      for (const g of holder.querySelectorAll("g.cluster")) {{
        const b = g.getBoundingClientRect();
        clusters[g.id.replace(/^d[0-9]+-/, "")] = [b.x, b.y, b.width, b.height];
      }}
      const fills = {{}};
      for (const g of holder.querySelectorAll("g.node")) {{
        const shape = g.querySelector("rect, polygon, path");
        const name = g.id.replace(/^(d[0-9]+-)?flowchart-/, "").replace(/-[0-9]+$/, "");
        if (shape) fills[name] = getComputedStyle(shape).fill;
      }}
      results.push({{ok: true, svg: r.svg, clusters: clusters, fills: fills}});
      if (!{show}) {{ holder.remove(); }}
    }} catch (e) {{
      results.push({{ok: false, error: String((e && e.message) || e)}});
    }}
  }}
  const pre = document.createElement("pre");
  pre.id = "result";
  pre.style.display = "none";
  pre.textContent = JSON.stringify(results);
  document.body.appendChild(pre);
}})();
</script></body></html>
"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def available() -> tuple[bool, str]:
    if chromium() is None:
        return False, "chromium is not installed (scripts/setup --system installs it)"
    if not MERMAID_JS.is_file():
        return False, f"{MERMAID_JS} is missing (scripts/setup installs npm mermaid)"
    return True, ""


def blocks(markdown: str) -> list[str]:
    """The bodies of the ```mermaid blocks of a markdown text."""
    return re.findall(r"```mermaid\n(.*?)```", markdown, flags=re.S)


def _page(diagrams: list[str], show: bool, tmp: Path) -> Path:
    page = tmp / "page.html"
    page.write_text(PAGE.format(js=MERMAID_JS.as_uri(), diagrams=json.dumps(diagrams),
                                show="true" if show else "false"))
    return page


def render(diagrams: list[str], timeout: float = 120) -> list[dict]:
    """Each diagram rendered by Mermaid: {"ok": True, "svg": ...} or {"ok": False, "error": ...}."""
    with tempfile.TemporaryDirectory(prefix="provisioner-mermaid-") as tmp:
        page = _page(diagrams, False, Path(tmp))
        proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                               "--virtual-time-budget=60000", "--dump-dom", page.as_uri()],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, "HOME": tmp})
    found = re.search(r'<pre id="result"[^>]*>(.*?)</pre>', proc.stdout, flags=re.S)
    if not found:
        raise RuntimeError(f"chromium produced no result (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(html.unescape(found.group(1)))


def screenshot(diagrams: list[str], png: Path, size: str = "1400,1000", timeout: float = 120) -> None:
    with tempfile.TemporaryDirectory(prefix="provisioner-mermaid-") as tmp:
        page = _page(diagrams, True, Path(tmp))
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                        "--virtual-time-budget=60000", f"--window-size={size}", f"--screenshot={png}",
                        page.as_uri()], capture_output=True, timeout=timeout, check=True,
                       env={**os.environ, "HOME": tmp})


if __name__ == "__main__":  # render the mermaid blocks of a markdown file to a PNG: python -m tests.mermaid IN OUT
    import sys

    ok, why = available()
    if not ok:
        raise SystemExit(why)
    found = blocks(Path(sys.argv[1]).read_text())
    for i, result in enumerate(render(found)):
        print(i, "ok" if result["ok"] else f"ERROR {result['error']}")
    screenshot(found, Path(sys.argv[2]), *(sys.argv[3:4]))
