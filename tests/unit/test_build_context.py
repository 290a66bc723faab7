"""The ingest image's tag: a digest of exactly the build context Docker sees.

Stands in for `docker build`'s context upload: .dockerignore patterns as moby/patternmatcher
reads and matches them (cleaned paths, `*` within one directory, `**` across directories,
parent-directory matches, `!` re-inclusion in order).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from components.build_context import DockerIgnore, context_digest, context_files, read_patterns
from components.ingest import SERVICE_DIR

ROOT = Path(__file__).resolve().parents[2]


def make_context(root: Path) -> Path:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / ".dockerignore").write_text("# the service's own ignore rules\nbuild\ndist\n**/__pycache__\n**/*.egg-info\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "src" / "pkg" / "app.py").write_text("print('v1')\n")
    return root


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["build"], "build/lib/x.py", True),  # a parent directory matches
        (["build"], "src/build/x.py", False),  # anchored at the context root
        (["/build"], "build/x.py", True),  # a leading slash is dropped
        (["*.pyc"], "app.pyc", True),
        (["*.pyc"], "src/app.pyc", False),  # `*` stays within one directory
        (["**/*.pyc"], "src/deep/app.pyc", True),
        (["**/__pycache__"], "src/pkg/__pycache__/app.cpython-312.pyc", True),
        (["src/**"], "src/a/b.py", True),
        (["*", "!src"], "src/a.py", False),  # a later `!` re-includes
        (["*", "!src", "**/*.md"], "src/README.md", True),
        (["docs/[a-c]*.txt"], "docs/b1.txt", True),
        (["docs/[a-c]*.txt"], "docs/d1.txt", False),
        (["app.p?"], "app.py", True),
        (["./dist/../build"], "build/x", True),  # patterns are cleaned paths
    ],
)
def test_dockerignore_matching(patterns, path, excluded):
    assert DockerIgnore(read_patterns("\n".join(patterns))).excludes(path) is excluded


def test_comments_blank_lines_and_spaces_are_read_as_docker_reads_them():
    assert read_patterns("\ufeff# comment\n\n  build  \n! dist\n /x/ \n") == ["build", "!dist", "x"]


def test_a_local_install_does_not_change_the_tag(tmp_path):
    context = make_context(tmp_path)
    before = context_digest(context)
    # What `pip install ./ingest_service` and editors leave behind.
    (context / "build" / "lib").mkdir(parents=True)
    (context / "build" / "lib" / "app.py").write_text("copied\n")
    (context / "dist").mkdir()
    (context / "dist" / "x-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    (context / "src" / "x.egg-info").mkdir()
    (context / "src" / "x.egg-info" / "PKG-INFO").write_text("Name: x\n")
    (context / "src" / "pkg" / "__pycache__").mkdir()
    (context / "src" / "pkg" / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"cache")
    assert context_digest(context) == before


def test_what_docker_sends_changes_the_tag(tmp_path):
    context = make_context(tmp_path)
    digests = {context_digest(context)}
    (context / "src" / "pkg" / "app.py").write_text("print('v2')\n")
    digests.add(context_digest(context))
    (context / "src" / "pkg" / "new.py").write_text("")
    digests.add(context_digest(context))
    (context / "src" / "pkg" / "new.py").chmod(0o755)  # Docker copies the mode
    digests.add(context_digest(context))
    (context / ".dockerignore").write_text("build\n")  # now dist/ and caches would be sent
    digests.add(context_digest(context))
    assert len(digests) == 5


def test_the_service_context_is_exactly_what_the_image_needs():
    files = context_files(SERVICE_DIR)
    assert {"Dockerfile", "requirements.lock", "pyproject.toml"} <= set(files)
    assert all(f in {"Dockerfile", ".dockerignore", "requirements.lock", "pyproject.toml"} or f.startswith("src/")
               for f in files), files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or ".egg-info" in f]


# ---------------------------------------------------------------- the image's inputs are pinned


def test_the_base_image_is_pinned_by_tag_and_digest():
    dockerfile = (SERVICE_DIR / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base), base
    # `make lock` resolves for the same Python minor version as the base image.
    minor = re.match(r"python:(3\.\d+)", base).group(1)
    assert f"IMAGE_PYTHON := {minor}" in (ROOT / "Makefile").read_text()


def _requirement_name(line: str) -> str:
    return re.split(r"[=<>!~ ;\[]", line, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_has_every_dependency_pinned_with_hashes():
    lock = (SERVICE_DIR / "requirements.lock").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)([^\n]*\\\n(?:\s+--hash=sha256:[0-9a-f]{64}\s*\\?\n?)+)",
                         lock, re.MULTILINE)
    requirements = [line for line in lock.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(entries) == len(requirements) > 0, "every requirement is name==version with --hash lines"
    locked = {name.lower().replace("_", "-"): version for name, version, _ in entries}
    declared = tomllib.loads((SERVICE_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = _requirement_name(requirement)
        assert name in locked, f"{requirement} is not in requirements.lock: run `make lock`"
        pinned = re.search(r"==\s*([^\s;,]+)", requirement)
        if pinned:
            assert locked[name] == pinned.group(1), f"{requirement} is locked at {locked[name]}: run `make lock`"


def test_the_image_installs_only_from_the_lock():
    dockerfile = (SERVICE_DIR / "Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n\\]*", dockerfile)
    assert installs == ["pip install --require-hashes --no-deps -r requirements.lock "]
