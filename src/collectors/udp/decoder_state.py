"""Saving and loading the flow decoder's state (templates, sampling, sequence numbers) atomically.

Both the UDP collector and file ingest keep their decoder here between runs, so data
whose template arrived before a restart still decodes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from collectors.errors import DecodeError
from collectors.flows.decoder import FlowDecoder

__all__ = ["load_decoder_state", "save_decoder_state"]

log = logging.getLogger(__name__)


def save_decoder_state(decoder: FlowDecoder, path: Path) -> None:
    """Write the decoder state atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(decoder.save_state())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_decoder_state(path: Path, **limits: int) -> FlowDecoder:
    """The decoder saved at ``path``; a fresh one if there is none or it is unreadable.

    An unreadable state file is renamed ``<name>.bad`` and logged, never fatal.
    """
    if not path.exists():
        return FlowDecoder(**limits)
    try:
        return FlowDecoder.load_state(path.read_bytes(), **limits)
    except (DecodeError, ValueError, KeyError, TypeError, OSError) as exc:
        bad = path.with_name(path.name + ".bad")
        log.warning("decoder state %s unreadable (%s); starting fresh, kept as %s", path, exc, bad)
        path.replace(bad)
        return FlowDecoder(**limits)
