"""Build the Dify plugin package from a staging directory that holds only what runs.

    python pluginpack/build.py [--out dist] [--no-cli]

The staging directory gets the plugin's runtime files (manifest, entry point, provider,
tools, the engine without its CLI, load tester and server faces, requirements.txt,
PRIVACY.md, the English plugin README and the localised ones under readme/). With the
`dify` CLI on PATH the package is made by `dify plugin package`; without it, this script
writes an unsigned zip of the same layout (sorted relative paths, no wrapper folder, at most
50 MB uncompressed), which self-hosted Dify installs when signature checks are off.
Standard library only, so it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "sse_fanin"
MAX_UNCOMPRESSED = 50 * 1024 * 1024   # dify plugin package refuses more
TOP_FILES = ("manifest.yaml", "main.py", "requirements.txt", "PRIVACY.md")
# (source folder, file patterns) copied as they are; subfolders not listed are left out
TREES = (("_assets", ("*",)), ("provider", ("*.py", "*.yaml")), ("tools", ("*.py", "*.yaml")),
         ("fanin", ("*.py",)), ("fanin/embed", ("*.py",)))
LEFT_OUT = {"fanin/__main__.py"}   # the CLI entry point: imports fanin.cli, which does not ship


def version() -> str:
    match = re.search(r"^version:\s*([0-9.]+)\s*$", (ROOT / "manifest.yaml").read_text(encoding="utf-8"), re.M)
    if not match:
        raise SystemExit("manifest.yaml has no version line")
    return match.group(1)


def stage(dest: Path) -> list[str]:
    """Fill `dest` (emptied first) with the runtime files; returns their relative paths, sorted."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    copied: list[tuple[Path, str]] = [(ROOT / name, name) for name in TOP_FILES]
    copied.append((ROOT / "readme" / "README.md", "README.md"))
    copied += [(path, f"readme/{path.name}") for path in sorted((ROOT / "readme").glob("README_*.md"))]
    for folder, patterns in TREES:
        for pattern in patterns:
            for path in sorted((ROOT / folder).glob(pattern)):
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and relative not in LEFT_OUT:
                    copied.append((path, relative))
    for source, relative in copied:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return sorted(relative for _, relative in copied)


def zip_package(staging: Path, out: Path) -> int:
    """The package as `dify plugin package` lays it out: every file under `staging` by its
    sorted relative path, no wrapper folder. Returns the uncompressed size."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    if total > MAX_UNCOMPRESSED:
        raise SystemExit(f"the package would be {total} bytes uncompressed, over Dify's 50 MB limit")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(staging).as_posix())
    return total


def build(out_dir: Path, *, use_cli: bool = True) -> tuple[Path, str]:
    """Stage and package; returns the package path and which tool made it."""
    staging = out_dir / "staging" / NAME
    stage(staging)
    package = out_dir / f"{NAME}-{version()}.difypkg"
    package.unlink(missing_ok=True)
    dify = shutil.which("dify") if use_cli else None
    if dify:
        subprocess.run([dify, "plugin", "package", str(staging), "-o", str(package)], check=True)
        return package, "dify CLI"
    zip_package(staging, package)
    return package, "unsigned zip"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default: dist)")
    parser.add_argument("--no-cli", action="store_true", help="write the zip even when the dify CLI is on PATH")
    args = parser.parse_args(argv)
    out = Path(args.out)
    package, how = build(out, use_cli=not args.no_cli)
    shown = package.relative_to(ROOT) if package.is_relative_to(ROOT) else package
    staging = out / "staging" / NAME
    staging_shown = staging.relative_to(ROOT) if staging.is_relative_to(ROOT) else staging
    if how == "dify CLI":
        print(f"built {shown} with the dify CLI from {staging_shown}")
    else:
        print(f"the dify CLI is not on PATH: made {shown}, an unsigned zip of the same layout, from {staging_shown}")
        print("  (install it on self-hosted Dify with FORCE_VERIFYING_SIGNATURE=false; see docs/dify.md, 'Install')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
