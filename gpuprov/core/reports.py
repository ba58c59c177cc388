"""Where gpuprov writes its reports on the controller (verify's JSON, users' connection notes).

``gpuprov_report_dir`` names the folder: an absolute path is used as it is; a
relative one lies in the job's artifacts folder when the run is a job of
ansible-runner (AWX's included), else in the project, the folder of site.yml, so
a run from a clone writes to ``reports/`` in the clone, wherever the command was
started from. Under the runner the project is a copy, or an installed collection,
that the job does not own: its artifacts folder is the job's own.
"""

from __future__ import annotations

import posixpath

# Playbooks run alone (playbooks/verify.yml) belong to the same project as site.yml.
PLAYBOOKS_FOLDER = "playbooks"


def project_dir(playbook_dir: str) -> str:
    """The folder of site.yml for a playbook in it or in its playbooks/ folder."""
    folder = posixpath.normpath(playbook_dir)
    if posixpath.basename(folder) == PLAYBOOKS_FOLDER:
        return posixpath.dirname(folder)
    return folder


def report_dir(setting: str, playbook_dir: str, kind: str = "", job_artifacts: str = "") -> str:
    """The controller folder for reports of ``kind`` (verify, connect) given the setting.

    ``job_artifacts`` is the job's artifacts folder under ansible-runner, which names it
    in ``AWX_ISOLATED_DATA_DIR`` for every job it runs; empty outside the runner.
    """
    if posixpath.isabs(setting):
        base = setting
    elif job_artifacts:
        base = posixpath.join(job_artifacts, setting)
    else:
        base = posixpath.join(project_dir(playbook_dir), setting)
    return posixpath.normpath(posixpath.join(base, kind) if kind else base)
