"""Reading an offline W&B run back (wandb has no reader for its `.wandb` log), for tracker tests."""

from __future__ import annotations

import json
from pathlib import Path


def read_wandb_history(run_dir: Path) -> list[dict]:
    """History rows of an offline W&B run file (LevelDB-style log of `Record` protobufs: a 7-byte
    header, then 32 KiB blocks of chunks: crc32 (4), length (2), type (1: full, 2/3/4: parts))."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    pos, buf, records = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # block padding
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(buf)
            buf = b""
    rows = []
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            items = rec.history.item  # "eval/loss" is stored as the nested key (eval, loss)
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return rows
