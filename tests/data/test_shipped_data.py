"""The shipped raw data is exactly what data/README.md documents: every file's SHA-256 matches data/raw/SHA256SUMS,
no file is unlisted, and the record counts in data/README.md match the files."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "data" / "raw"
SUMS = RAW / "SHA256SUMS"
README = REPO / "data" / "README.md"


def read_sums() -> dict[str, str]:
    table = {}
    for lineno, line in enumerate(SUMS.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](\S.*)", line)
        assert m, f"{SUMS}:{lineno}: not a sha256sum line: {line!r}"
        assert m.group(2) not in table, f"{SUMS}:{lineno}: {m.group(2)} listed twice"
        table[m.group(2)] = m.group(1)
    return table


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


SUM_TABLE = read_sums()


def test_every_raw_file_is_listed():
    present = {p.relative_to(RAW).as_posix() for p in RAW.rglob("*") if p.is_file() and p != SUMS}
    assert present == set(SUM_TABLE), {"unlisted": present - set(SUM_TABLE), "missing": set(SUM_TABLE) - present}
    assert len(SUM_TABLE) == 28  # 9 benchmarks + 2 text corpora + the speech manifest + 16 FLAC clips


@pytest.mark.parametrize("name", sorted(SUM_TABLE))
def test_sha256(name):
    assert sha256(RAW / name) == SUM_TABLE[name], f"data/raw/{name} differs from data/raw/SHA256SUMS"


def test_readme_documents_every_file_with_its_checksum_and_record_count():
    text = README.read_text(encoding="utf-8")
    for name, digest in SUM_TABLE.items():
        if name.endswith(".flac"):
            assert f"`{name}` | `{digest}`" in text, name
            continue
        m = re.search(rf"^\| `{re.escape(name)}` \| (\d+) \|.*`{digest}` \|$", text, re.MULTILINE)
        assert m, f"data/README.md has no row for {name} with its sha256"
        with gzip.open(RAW / name, "rt", encoding="utf-8") as f:
            records = sum(1 for line in f if line.strip())
        assert int(m.group(1)) == records, name
