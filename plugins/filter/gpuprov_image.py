"""Jinja filters that hand gpuprov's image core to the team_image role (on the controller)."""

from __future__ import annotations

from typing import Any

from gpuprov.core import image_build, image_pin


def base_problem(base: str, local: bool) -> str:
    return image_build.check_base(base, bool(local)) or ""


def manager_problem(manager: str, channels: list[str]) -> str:
    return image_build.check_package_manager(manager, channels) or ""


def pin(image: dict[str, Any], reference: str) -> dict[str, Any]:
    return image_pin.pin_from_image(image, reference)


def pin_yaml(value: dict[str, Any], comment: str | None = None) -> str:
    return image_pin.render_pin(value, comment)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gpuprov_image_base_problem": base_problem,
            "gpuprov_image_manager_problem": manager_problem,
            "gpuprov_image_torch_index": image_build.torch_index,
            "gpuprov_image_build_requirements": image_build.requirements,
            "gpuprov_image_build_labels": image_build.labels,
            "gpuprov_image_pin": pin,
            "gpuprov_image_pin_yaml": pin_yaml,
        }
