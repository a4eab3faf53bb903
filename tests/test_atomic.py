"""Atomic writes: all or nothing, no temporary files left, ordinary file permissions."""

import os
import stat

import pytest

from mambaad_cli.atomic import _UMASK, write_bytes, write_text, write_with


def test_write_replaces_whole_file_with_plain_permissions(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_text(target, "old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_UMASK
    assert os.listdir(target.parent) == ["metrics.json"]


def test_failed_writer_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.safetensors"
    write_bytes(target, b"complete")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_with(target, broken)
    assert target.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["model.safetensors"]
