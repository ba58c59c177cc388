"""Jinja filters that hand gpuprov's image core to the team_image role (on the controller)."""

from __future__ import annotations

from typing import Any

from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import image_build, image_pin


def archive_source(chosen: str, hostvars: Any, batch: list[str]) -> str:
    """The host that saves the archive for the batch's archive-fed hosts."""
    transfers = {host: hostvars[host].get("team_image_host_transfer", "") for host in batch}
    return image_pin.archive_source(chosen, transfers)


def pin(image: dict[str, Any], reference: str) -> dict[str, Any]:
    return image_pin.pin_from_image(image, reference)


def pin_yaml(value: dict[str, Any], comment: str | None = None) -> str:
    return image_pin.render_pin(value, comment)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gpuprov_image_build_problem": image_build.build_problem,
            "gpuprov_image_archive_source": archive_source,
            "gpuprov_image_torch_index": image_build.torch_index,
            "gpuprov_image_cuda_build": image_build.cuda_build,
            "gpuprov_image_user_layer": image_build.user_layer,
            "gpuprov_image_build_requirements": image_build.requirements,
            "gpuprov_image_build_labels": image_build.labels,
            "gpuprov_image_pin": pin,
            "gpuprov_image_pin_yaml": pin_yaml,
            "gpuprov_pulled_reference": image_pin.pulled_reference,
            "gpuprov_run_reference": image_pin.run_reference,
            "gpuprov_pull_failure": image_pin.pull_failure,
        }
