"""Documents the repository cites exist in it, and cited sections of docs/algorithm.md exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"([\w./-]+\.md) §(\d+(?:\.\d+)*)")
ALGORITHM = (ROOT / "docs" / "algorithm.md").resolve()


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith((".py", ".md", ".toml", ".sh", "Makefile")) and (ROOT / n).is_file()]


def sections(doc: Path) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#+ (\d+(?:\.\d+)*)\.? ", doc.read_text(), re.M)}


def test_every_cited_document_and_section_exists():
    algorithm = sections(ROOT / "docs" / "algorithm.md")
    problems = []
    for path in tracked_text_files():
        rel = path.relative_to(ROOT).as_posix()
        for doc, section in CITATION.findall(path.read_text(errors="replace")):
            target = next((t for t in (ROOT / doc, path.parent / doc) if t.is_file()), None)  # or relative to it
            if target is None:
                problems.append(f"{rel} cites {doc}, which is not in the repository")
            elif target.resolve() == ALGORITHM and section.split(".")[0] not in algorithm:
                problems.append(f"{rel} cites docs/algorithm.md §{section}, which has no such section")
    assert not problems, "\n".join(problems)


def test_readme_stays_short_and_links_to_its_details():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for link in ("docs/training.md", "docs/algorithm.md", "benchmarks/README.md", "make demo", "make test"):
        assert link in text
