"""Install stand-in distributions into the running Python's site-packages as pip records them.

Usage: python standin.py NAME VERSION WHEEL-TAG [NAME VERSION WHEEL-TAG ...]

Each gets a package folder with __init__.py and NAME-VERSION.dist-info holding METADATA,
WHEEL, INSTALLER (pip), REQUESTED and RECORD (sha256 in urlsafe base64, size; RECORD itself
without a hash), so gpuprov's inspector reads them like any pip install. No real code.
"""

import base64
import csv
import hashlib
import io
import os
import sys
import sysconfig


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(site: str, name: str, version: str, tag: str) -> None:
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'"""Stand-in for {name} {version} (gpuprov molecule scenario)."""\n'
        f'__version__ = "{version}"\n',
        f"{name}/version.py": f'__version__ = "{version}"\n',
        f"{dist}/METADATA": (
            "Metadata-Version: 2.4\n"
            f"Name: {name}\n"
            f"Version: {version}\n"
            f"Summary: Stand-in for {name} {version}: metadata only, for gpuprov's audit\n"
            "Requires-Python: >=3.10\n"
            "\n"
        ),
        f"{dist}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: gpuprov-molecule\nRoot-Is-Purelib: false\nTag: {tag}\n"
        ),
        f"{dist}/INSTALLER": "pip\n",
        f"{dist}/REQUESTED": "",
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, text in files.items():
        data = text.encode("utf-8")
        full = os.path.join(site, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(data)
        writer.writerow([path, _digest(data), len(data)])
    writer.writerow([f"{dist}/RECORD", "", ""])
    with open(os.path.join(site, dist, "RECORD"), "w", encoding="utf-8") as handle:
        handle.write(out.getvalue())


def main(argv: list) -> int:
    if not argv or len(argv) % 3:
        sys.stderr.write(__doc__)
        return 2
    site = sysconfig.get_paths()["purelib"]
    for i in range(0, len(argv), 3):
        install(site, *argv[i : i + 3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
