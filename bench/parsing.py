"""Text extraction per format (issue 21, item 13): files parsed, characters kept, seconds.

    python bench/parsing.py

The files are written here by each format's own library from this repository's README (bench/sample_files.py:
reportlab for PDF, python-docx, python-pptx, openpyxl, and plain writers for the text formats); nothing is fetched.
Each file is extracted `ROUNDS` times through plugkit.plugins.retrieval.parsing.extract (what /upsert-file and
plugkit ingest run); seconds are the median round's total per format, with the spread of the rounds. Results go to
bench/results/parsing.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.sample_files import files_by_format  # noqa: E402

from plugkit.plugins.retrieval.parsing import FileError, extract  # noqa: E402

ROUNDS = 5
BASELINE_COMMIT = "2628bdd"  # parsing.py before issue 21's extraction changes


def baseline_extract_text() -> Any:
    """extract_text of parsing.py as it was at BASELINE_COMMIT, to compare what each version keeps."""
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:src/plugkit/plugins/retrieval/parsing.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_parsing.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_parsing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extract_text


def main() -> None:
    results: dict[str, Any] = {}
    before = baseline_extract_text()
    for kind, files in files_by_format().items():
        kept_before = 0
        for name, data in files:
            try:
                kept_before += len(before(data, name)[1])
            except FileError:
                pass
        rounds: list[float] = []
        kept = parsed = 0
        failures: list[str] = []
        links = 0
        for round_no in range(ROUNDS):
            started = time.perf_counter()
            for name, data in files:
                try:
                    found = extract(data, name)
                except FileError as exc:
                    if round_no == 0:
                        failures.append(f"{name}: {exc}")
                    continue
                if round_no == 0:
                    parsed += 1
                    kept += len(found.text)
                    links += len(found.links)
                    assert "\x0b" not in found.text
            rounds.append(time.perf_counter() - started)
        results[kind] = {
            "files": len(files),
            "files_parsed": parsed,
            "failures": failures,
            "bytes": sum(len(d) for _n, d in files),
            "characters_kept": kept,
            "characters_kept_before": kept_before,
            "seconds": round(statistics.median(rounds), 4),
            "seconds_min_max": [round(min(rounds), 4), round(max(rounds), 4)],
            **({"links_kept_apart": links} if kind == "md" else {}),
        }
        print(kind, results[kind], flush=True)
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": (
            "three files per format, small to large (pdf 1, 5 and 19 pages; docx, md, html, txt about 2, 16 and 64 "
            "thousand characters; pptx 3, 12 and 40 slides with speaker notes; xlsx and csv 10, 100 and 400 rows; "
            f"json 10, 50 and 200 records), made from the README by each format's library; seconds: the median of "
            f"{ROUNDS} rounds over the three files, min and max beside it. Other engineers' tests were running on "
            "the same 2 cores, so absolute seconds are noisy; characters_kept is exact. characters_kept_before: what "
            f"parsing.py at commit {BASELINE_COMMIT} kept of the same files (pptx: no speaker notes but bare slide "
            "labels; docx: no header or footer; md: the raw Markdown, badge and link URLs included)."
        ),
        "formats": results,
    }
    out = ROOT / "bench" / "results" / "parsing.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
