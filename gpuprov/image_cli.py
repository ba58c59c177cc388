"""`gpuprov audit` and `gpuprov image pin`: the Docker CLI calls around the pure image core."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .core import audit as core_audit
from .core import image_pin

INSPECTOR = Path(__file__).resolve().parent / "inspector.py"


def _docker(docker_host: str | None) -> tuple[str, ...]:
    return ("docker", "-H", docker_host) if docker_host else ("docker",)


def _inspect(image: str, docker_host: str | None) -> dict:
    argv = image_pin.audit_commands(image, _docker(docker_host))["inspect"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise core_audit.AuditInputError(
            f"docker image inspect {image} failed: {done.stderr.strip()}"
        )
    return image_pin.parse_inspect(done.stdout, image)


def audit(image: str, pin: dict, as_json: bool, docker_host: str | None = None) -> int:
    """Run the inspector in IMAGE, judge it against the pin, print; 0 pass, 1 fail, 2 error."""
    try:
        found = _inspect(image, docker_host)
        argv = image_pin.audit_commands(image, _docker(docker_host))["run"]
        done = subprocess.run(
            argv, input=INSPECTOR.read_text(), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise core_audit.AuditInputError(
                f"the inspector did not run in {image} (exit {done.returncode}): "
                f"{done.stderr.strip()[-800:]}"
            )
        report = image_pin.audit_outputs(done.stdout, found, pin)
    except core_audit.AuditInputError as error:
        print(f"gpuprov audit: cannot audit {image}: {error}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({"image": image, **report.to_dict()}, indent=2))
    else:
        print(f"audit of {image}")
        sys.stdout.write(core_audit.render_table(report))
    return 0 if report.passed else 1


def pin(image: str, docker_host: str | None = None) -> int:
    """Print the pin of a pushed image, ready for group_vars/all/image.yml."""
    try:
        found = _inspect(image, docker_host)
        value = image_pin.pin_from_image(
            found,
            image.split("@")[0].rsplit(":", 1)[0]
            if ":" in image.split("/")[-1]
            else image.split("@")[0],
        )
    except (core_audit.AuditInputError, image_pin.PinError) as error:
        print(f"gpuprov image pin: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(
        image_pin.render_pin(value, f"pin of {image}; commit as group_vars/all/image.yml")
    )
    return 0
