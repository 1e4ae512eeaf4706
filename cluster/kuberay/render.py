"""Keep rayservice.yaml's ``serveConfigV2`` the text of cluster/serve_config.yaml.

KubeRay takes the Serve config as one YAML string inside the RayService. Generating that
string from the file ``serve deploy`` reads keeps the two ways of deploying Fathom from
drifting apart; ``--check`` makes a stale manifest fail instead of being rewritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SERVE_CONFIG = HERE.parent / "serve_config.yaml"
RAYSERVICE = HERE / "rayservice.yaml"

KEY_LINE = "  serveConfigV2: |"  # a literal block under spec
BLOCK_INDENT = " " * 4


def render(manifest: str, serve_config: str) -> str:
    """``manifest`` with its serveConfigV2 block replaced by ``serve_config``, comments kept."""
    lines = manifest.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == KEY_LINE]
    if len(starts) != 1:
        raise ValueError(f"expected one line {KEY_LINE.strip()!r} in the manifest, found {len(starts)}")
    start = starts[0] + 1
    end = start
    while end < len(lines) and (lines[end].startswith(BLOCK_INDENT) or not lines[end].strip()):
        end += 1
    while end > start and not lines[end - 1].strip():  # trailing blank lines belong to what follows
        end -= 1
    text = serve_config.rstrip("\n") + "\n"
    block = "".join(BLOCK_INDENT + line if line.strip() else "\n" for line in text.splitlines(keepends=True))
    out = "".join(lines[:start]) + block + "".join(lines[end:])
    if yaml.safe_load(out)["spec"]["serveConfigV2"] != text:
        raise ValueError("serve_config.yaml does not survive embedding as a YAML literal block "
                         "(whitespace-only lines or tabs?)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.kuberay", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if rayservice.yaml is out of date; write nothing")
    args = p.parse_args(argv)
    current = RAYSERVICE.read_text()
    wanted = render(current, SERVE_CONFIG.read_text())
    if wanted == current:
        print(f"{RAYSERVICE.name}: serveConfigV2 is up to date")
        return 0
    if args.check:
        print(f"{RAYSERVICE.name}: serveConfigV2 differs from {SERVE_CONFIG.name}; run python -m cluster.kuberay",
              file=sys.stderr)
        return 1
    RAYSERVICE.write_text(wanted)
    print(f"{RAYSERVICE.name}: serveConfigV2 regenerated from {SERVE_CONFIG.name}")
    return 0
