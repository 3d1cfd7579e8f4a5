"""Print the image tag of the current commit: seedtest-pipeline:<version>-<git short sha>.

The version is pyproject.toml's; the sha is HEAD's, so a tag names exactly one commit (never
`latest`). With --write OVERLAY_KUSTOMIZATION, also set that overlay's image tag, from which the
migration Job's name and the runs' image follow:

    python deploy/image_tag.py                   # seedtest-pipeline:0.1.0-bff5f7a
    python deploy/image_tag.py --write deploy/overlays/staging/kustomization.yaml
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

COMPONENT = "seedtest-pipeline"
ROOT = Path(__file__).resolve().parents[1]
# The newTag of the images entry named seedtest-pipeline (a kustomization's `images:` list).
_NEW_TAG = re.compile(rf"(- name: {COMPONENT}\n(?:[ \t]+\w+:.*\n)*?[ \t]+newTag:[ \t]*)(\S+)")


def release() -> str:
    """<version>-<git short sha> of HEAD."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sha = subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    return f"{version}-{sha}"


def uncommitted_changes() -> bool:
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return bool(status.strip())


def set_overlay_tag(kustomization: Path, tag: str) -> None:
    text = kustomization.read_text()
    updated, count = _NEW_TAG.subn(rf"\g<1>{tag}", text)
    if count != 1:
        raise SystemExit(f"{kustomization}: expected one images entry '{COMPONENT}' with a newTag, found {count}")
    kustomization.write_text(updated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", type=Path, metavar="KUSTOMIZATION", help="set this overlay's image tag")
    args = parser.parse_args(argv)
    tag = release()
    if uncommitted_changes():
        print(f"warning: uncommitted changes: an image built now is not {COMPONENT}:{tag}", file=sys.stderr)
    if args.write:
        set_overlay_tag(args.write, tag)
    print(f"{COMPONENT}:{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
