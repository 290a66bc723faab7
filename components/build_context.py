"""The files `docker build` sends for a context directory, and a digest of exactly those.

The ingest image is tagged with this digest, so the tag (and the container) changes exactly
when the image's inputs do: files that `.dockerignore` excludes (a local `pip install`'s
build/ and *.egg-info, caches, editor files) never reach Docker and must not change it.

`.dockerignore` semantics follow Docker's (moby/patternmatcher and its ignorefile reader):
patterns are cleaned paths relative to the context, `*` and `?` stop at `/`, `**` spans
directories, a pattern matching a parent directory excludes everything below it, and later
`!` patterns re-include what earlier ones excluded.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

DIGEST_LENGTH = 16
# Always part of the digest, wherever .dockerignore puts them: they define the build.
BUILD_DEFINITION = ("Dockerfile", ".dockerignore")


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool  # a `!` pattern: re-includes


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore, cleaned as Docker cleans them."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append(("!" if invert else "") + pattern)
    return patterns


def _compile(pattern: str) -> re.Pattern[str]:
    """A regular expression equivalent to Docker's matching of one cleaned pattern."""
    regex = "^"
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if in_class:
            # Character classes (`[a-z]`, `[^/]`) pass through as they are.
            regex += ch
            in_class = ch != "]"
        elif ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1  # `**/` is `**`
                # `**` at the end accepts everything; elsewhere any number of directories, even none.
                regex += ".*" if i == len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif ch == "?":
            regex += "[^/]"
        elif ch == "\\":
            regex += re.escape(pattern[i]) if i < len(pattern) else re.escape(ch)
            i += 1
        elif ch == "[":
            regex += ch
            in_class = True
        else:
            regex += re.escape(ch)
    return re.compile(regex + "$")


class DockerIgnore:
    """Decides, like Docker, whether a context-relative path is left out of the build context."""

    def __init__(self, patterns: list[str]):
        self._patterns = []
        for pattern in patterns:
            exclusion = pattern.startswith("!")
            body = pattern[1:] if exclusion else pattern
            if not body:
                raise ValueError('.dockerignore: "!" alone is not a pattern; write the path to re-include after it')
            self._patterns.append(_Pattern(_compile(body), exclusion))

    def excludes(self, path: str) -> bool:
        """Whether ``path`` (slash-separated, relative to the context) is left out."""
        parents = posixpath.dirname(path).split("/") if "/" in path else []
        prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        excluded = False
        for pattern in self._patterns:
            # An inclusion cannot exclude more, an exclusion has nothing to re-include yet.
            if pattern.exclusion != excluded:
                continue
            if pattern.regex.match(path) or any(pattern.regex.match(prefix) for prefix in prefixes):
                excluded = not pattern.exclusion
        return excluded


def context_files(context: Path) -> list[str]:
    """Every file Docker sends for ``context`` (plus the build definition), as sorted relative paths."""
    ignore_file = context / ".dockerignore"
    ignore = DockerIgnore(read_patterns(ignore_file.read_text()) if ignore_file.exists() else [])
    files = []
    for root, dirs, names in os.walk(context):
        dirs.sort()
        for name in names:
            relative = Path(root, name).relative_to(context).as_posix()
            if relative in BUILD_DEFINITION or not ignore.excludes(relative):
                files.append(relative)
    return sorted(files)


def context_digest(context: Path) -> str:
    """A digest of the files Docker sends: their paths, executable bits, contents and link targets."""
    digest = hashlib.sha256()
    for relative in context_files(context):
        path = context / relative
        digest.update(relative.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link\0" + os.readlink(path).encode() + b"\0")
            continue
        digest.update(b"x\0" if os.access(path, os.X_OK) else b"-\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:DIGEST_LENGTH]
