#!/usr/bin/env python3
"""Reads a direct-mail `ready/` directory the way a print vendor would.

Only the standard library: hashlib for the checksums, the `csv` module for the
rows, Python's own codecs for the text (Shift_JIS files are read as cp932,
Microsoft's Shift_JIS, which is what Japanese print vendors and Excel use).

For every `*.manifest.json` it checks that the CSV it names exists, that its
SHA-256 and row count match the manifest, and that the header row is the
manifest's columns. It prints one JSON object on stdout:
`{"batches": [{"manifest": {...}, "rows": [{column: value}, ...]}], "errors": [...]}`
and exits 1 if there is any error.

usage: dm_read.py READY_DIR
"""

import csv
import hashlib
import io
import json
import pathlib
import sys

CODECS = {"utf-8": "utf-8", "utf-8-bom": "utf-8-sig", "shift_jis": "cp932"}


def read_batch(manifest_path, errors):
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    name = manifest_path.name[: -len(".manifest.json")] + ".csv"
    csv_path = manifest_path.with_name(name)
    if not csv_path.exists():
        errors.append(f"{manifest_path.name}: {name} is missing")
        return None
    raw = csv_path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != manifest.get("sha256"):
        errors.append(f"{name}: sha256 {digest} but the manifest says {manifest.get('sha256')}")
    encoding = manifest.get("encoding")
    if encoding == "utf-8-bom" and not raw.startswith(b"\xef\xbb\xbf"):
        errors.append(f"{name}: utf-8-bom without a BOM")
    if encoding == "utf-8" and raw.startswith(b"\xef\xbb\xbf"):
        errors.append(f"{name}: utf-8 with a BOM")
    try:
        text = raw.decode(CODECS[encoding])
    except (KeyError, UnicodeDecodeError) as e:
        errors.append(f"{name}: does not decode as {encoding}: {e}")
        return None
    if raw and not raw.endswith(b"\r\n"):
        errors.append(f"{name}: the last row does not end with CRLF")
    table = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    if not table:
        errors.append(f"{name}: no header row")
        return None
    header, rows = table[0], table[1:]
    if header != manifest.get("columns"):
        errors.append(f"{name}: header {header} but the manifest says {manifest.get('columns')}")
    if len(rows) != manifest.get("rows"):
        errors.append(f"{name}: {len(rows)} rows but the manifest says {manifest.get('rows')}")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            errors.append(f"{name}: row {i + 1} has {len(row)} cells, the header {len(header)}")
    return {"manifest": manifest, "rows": [dict(zip(header, row)) for row in rows]}


def main():
    ready = pathlib.Path(sys.argv[1])
    errors = []
    batches = []
    for manifest_path in sorted(ready.glob("*.manifest.json")):
        batch = read_batch(manifest_path, errors)
        if batch is not None:
            batches.append(batch)
    for csv_path in sorted(ready.glob("*.csv")):
        if not csv_path.with_name(csv_path.name[:-4] + ".manifest.json").exists():
            errors.append(f"{csv_path.name}: no manifest")
    json.dump({"batches": batches, "errors": errors}, sys.stdout, ensure_ascii=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
