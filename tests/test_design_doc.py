"""Every "docs/design.md section N" cited in the repository names a section the document has."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DESIGN = REPO / "docs" / "design.md"
CITATION = re.compile(r"docs/design\.md sections? (\d+(?:\.\d+)?(?:(?:, | and |-)\d+(?:\.\d+)?)*)")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [REPO / p for p in listed.split("\0") if p.endswith((".py", ".md", ".toml", ".txt"))]


def test_design_doc_sections_are_numbered():
    numbers = HEADING.findall(DESIGN.read_text())
    assert numbers[0] == "1"
    assert len(numbers) == len(set(numbers))


def test_every_citation_names_an_existing_section():
    sections = set(HEADING.findall(DESIGN.read_text()))
    cited: dict[str, list[str]] = {}
    for path in _tracked_text_files():
        if not path.exists():
            continue
        for match in CITATION.finditer(path.read_text(errors="replace")):
            for number in re.split(r", | and |-", match.group(1)):
                cited.setdefault(number, []).append(str(path.relative_to(REPO)))
    assert cited, "no file cites docs/design.md"
    missing = {n: files for n, files in cited.items() if n not in sections}
    assert not missing, f"cited sections missing from docs/design.md: {missing}"


def test_no_citation_of_the_old_notes():
    stale = [
        str(p.relative_to(REPO))
        for p in _tracked_text_files()
        if p.exists() and p != Path(__file__) and "DESIGN.md" in p.read_text(errors="replace")
    ]
    assert not stale, f"files still cite DESIGN.md instead of docs/design.md: {stale}"
