"""Benching a device over SSH: ``python -m bench --target T --device ssh://[user@]host[:port]``.

The transport (the user's own ssh, the content-addressed bundle, the agent's run) lives in
export/remote.py, on the stages' floor, because ``python -m export --device`` builds TensorRT
engines on a device through it too; this module is the bench's name for it.
"""

from __future__ import annotations

from export.remote import (
    AGENT_ROOTS,
    BOOT,
    PROGRESS_PREFIX,
    REMOTE_ROOT,
    REMOTE_ROOT_ENV,
    SSH_OPTIONS_ENV,
    RemoteJob,
    Session,
    SshDevice,
    code_closure,
    code_files,
    parse_device,
    run_remote,
    target_fields,
)

__all__ = [
    "AGENT_ROOTS",
    "BOOT",
    "PROGRESS_PREFIX",
    "REMOTE_ROOT",
    "REMOTE_ROOT_ENV",
    "SSH_OPTIONS_ENV",
    "RemoteJob",
    "Session",
    "SshDevice",
    "code_closure",
    "code_files",
    "parse_device",
    "run_remote",
    "target_fields",
]
