"""Where shards may come from: local paths and http(s) URLs, and a command only when the user's command line opts in.

A shard index (index.json), a run's config.json and a recipe are files someone else may have written,
so nothing they name is ever run: the shard entries of an index are local paths (relative ones taken
from the index's folder, `file:///abs` accepted) or http(s) URLs; anything else is refused with an
error naming the index and the entry. A `pipe:CMD` index location (the command prints index.json)
is honoured only when the exact string was registered with `allow_pipe_url` in this process, which
`cropmix train --allow-pipe-urls` does for the `--data` its own command line names; that switch is
never stored in or read from a config.

Reads are bounded in time and size: HTTP requests time out after URL_TIMEOUT_S seconds; a `pipe:`
command, and all it started, is killed after PIPE_TIMEOUT_S or once it has printed more than an index
may hold. Brace patterns ("train-{000000..000146}.tar", "{a,b}") are expanded here,
without the braceexpand package.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import selectors
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from typing import IO

from .safe_files import open_regular

__all__ = [
    "MAX_SHARD_NAMES",
    "PIPE_FLAG",
    "URL_TIMEOUT_S",
    "allow_pipe_url",
    "expand_braces",
    "index_location",
    "name_count",
    "open_shard",
    "read_location",
    "resolve_entry",
]

PIPE_FLAG = "--allow-pipe-urls"
URL_TIMEOUT_S = 60.0
PIPE_TIMEOUT_S = 600.0
MAX_SHARD_NAMES = 10_000_000  # what one brace pattern may name, all its groups together
MAX_RANGE_DIGITS = 18  # the digits of a brace range's bounds (zero padding included)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")  # a Windows path, not a URL
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_allowed_pipes: set[str] = set()


def allow_pipe_url(url: str) -> None:
    """Let this process run the `pipe:` command `url` (exactly this string): for a command line's own option only."""
    if not url.startswith("pipe:"):
        raise ValueError(f"allow_pipe_url takes a 'pipe:' URL, got {url!r}")
    _allowed_pipes.add(url)


def _scheme(text: str) -> str | None:
    match = _SCHEME.match(text)
    return None if match is None or _DRIVE.match(text) else match.group(1).lower()


def _file_url_path(url: str, where: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/") or parsed.query or parsed.fragment:
        raise ValueError(f"{where}: {url!r} is not a local file URL; accepted: file:///absolute/path")
    return urllib.parse.unquote(parsed.path)


def index_location(text: str) -> tuple[str, str]:
    """("file" | "http" | "pipe", location) of a shard index named on a command line or in a config.

    A local file or folder that exists wins over any URL reading of its name (a folder "exp:1" is a folder).
    """
    scheme = None if os.path.exists(text) else _scheme(text)
    if scheme is None:
        return "file", text
    if scheme == "file":
        return "file", _file_url_path(text, "shard index")
    if scheme in ("http", "https"):
        return "http", text
    if scheme == "pipe":
        if text not in _allowed_pipes:
            raise ValueError(
                f"shard index {text!r} is a command (pipe:): it runs only when named on the command line "
                f"together with {PIPE_FLAG}"
            )
        return "pipe", text[len("pipe:") :]
    raise ValueError(f"shard index {text!r}: scheme {scheme!r} is not read; accepted: a local path, http(s)://")


def read_location(kind: str, location: str, max_bytes: int) -> bytes:
    """The bytes of an index at an `index_location` (local: a regular file; http: with a timeout; pipe: the output)."""
    if kind == "file":
        with open_regular(location, max_bytes) as handle:
            return handle.read(max_bytes + 1)
    if kind == "http":
        with urllib.request.urlopen(location, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 (http(s) only)
            data = response.read(max_bytes + 1)
    else:
        data = command_output(location, max_bytes)
    if len(data) > max_bytes:
        raise ValueError(f"{location!r} holds more than the limit of {max_bytes} bytes for a shard index")
    return data


def command_output(command: str, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """What the shell command (the user's own, named with PIPE_FLAG) prints, at most `max_bytes` + 1 bytes
    of it: whatever it relays (a download) may print without end. Both its outputs are read here, against
    a deadline of `timeout_s` (default PIPE_TIMEOUT_S); then it and all it started in its process group
    are killed, whether it finished, passed the limit or ran out of time (one that left the group keeps
    nothing waiting). ValueError with its status and last line of stderr if it fails or times out."""
    limit = PIPE_TIMEOUT_S if timeout_s is None else timeout_s
    process = subprocess.Popen(  # noqa: S602 (a command the user's own command line named)
        command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    output, errors = bytearray(), bytearray()
    try:
        finished = _read_both(process, output, errors, max_bytes, time.monotonic() + limit)
    finally:
        _kill_group(process)
        process.wait()
        process.stdout.close()
        process.stderr.close()
    if not finished:
        raise ValueError(f"command {command!r} did not finish within {limit:.0f} s")
    if len(output) <= max_bytes and process.returncode != 0:
        last = bytes(errors).decode("utf-8", "replace").strip().splitlines()[-1:]
        raise ValueError(f"command {command!r} failed with status {process.returncode}: {' '.join(last)}")
    return bytes(output[: max_bytes + 1])


def _read_both(
    process: subprocess.Popen, output: bytearray, errors: bytearray, max_bytes: int, deadline: float
) -> bool:
    """Read the process's stdout into `output` (until past `max_bytes`) and the tail of its stderr into
    `errors` until both end and it exits; False if `deadline` (time.monotonic) came first."""
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map() and len(output) <= max_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.fileobj is process.stdout:
                    output.extend(chunk)
                else:
                    errors.extend(chunk)
                    del errors[:-4096]
    if len(output) > max_bytes:
        return True
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # it has already ended, with all it started
        os.killpg(process.pid, signal.SIGKILL)


def resolve_entry(entry: str, base: str | None, where: str) -> str:
    """A shard entry of the index `where` as a local path or an http(s) URL, relative ones taken from `base`.

    base: the index's folder (a local path or an http(s) URL ending in "/"), None when the index came
    from a command (then entries must be absolute). Anything else (pipe:, s3:, ...) is refused.
    """
    scheme = _scheme(entry)
    if scheme == "file":
        return _file_url_path(entry, f"shard index {where!r}")
    if scheme in ("http", "https"):
        return entry
    if scheme is not None:
        raise ValueError(
            f"shard index {where!r}: shard {entry!r} is not read (scheme {scheme!r}); a shard index may name "
            "local paths (relative to its folder) and http(s) URLs only, never a command"
        )
    if base is None:
        if not os.path.isabs(entry):
            raise ValueError(f"shard index {where!r} comes from a command: shard {entry!r} must be an absolute path")
        return entry
    if _scheme(base) in ("http", "https"):
        return urllib.parse.urljoin(base, entry)
    return entry if os.path.isabs(entry) else os.path.join(base, entry)


def open_shard(url: str) -> IO[bytes]:
    """A binary stream of the shard `url` (a local regular file, or http(s) with a timeout); nothing else is opened."""
    scheme = _scheme(url)
    if scheme is None:
        return open_regular(url)
    if scheme in ("http", "https"):
        return urllib.request.urlopen(url, timeout=URL_TIMEOUT_S)  # noqa: S310 (http(s) only)
    raise ValueError(f"shard {url!r} is not read (scheme {scheme!r}); shards are local paths or http(s) URLs")


def _range_bounds(body: str, a: str, b: str) -> tuple[int, int]:
    """The integer bounds of the range group `body`; ValueError for bounds of more than MAX_RANGE_DIGITS digits
    (Python refuses to read integers of over 4300 digits, in a message naming neither the group nor the file)."""
    if max(len(a), len(b)) > MAX_RANGE_DIGITS:
        shown = body if len(body) <= 60 else body[:60] + "..."
        raise ValueError(f"brace range {{{shown}}} has bounds of over {MAX_RANGE_DIGITS} digits: not shard numbers")
    return int(a), int(b)


def _count(body: str) -> int:
    """How many strings one brace group stands for, without listing them (a range may be huge)."""
    numbers = _RANGE.match(body)
    if numbers:
        lo, hi = _range_bounds(body, *numbers.groups())
        return abs(hi - lo) + 1
    return len(body.split(","))  # a group without a comma is itself: one


def _choices(body: str) -> list[str]:
    """The strings one brace group stands for: a list, a zero-padded integer range, or itself, braces kept."""
    numbers = _RANGE.match(body)
    if not numbers:
        return body.split(",") if "," in body else ["{" + body + "}"]
    a, b = numbers.groups()
    lo, hi = _range_bounds(body, a, b)
    width = max(len(a), len(b)) if any(len(x) > 1 and x.startswith("0") for x in (a, b)) else 0
    step = 1 if hi >= lo else -1
    return [str(i).zfill(width) for i in range(lo, hi + step, step)]


def name_count(pattern: str) -> int:
    """How many strings the brace pattern names (groups multiply: "{0..99}{0..99}" is 10^4), without listing
    them; counting stops once past MAX_SHARD_NAMES, so the result is then only known to be over it (a
    pattern of millions of groups costs no more than one of a few)."""
    total = 1
    for match in _BRACE.finditer(pattern):
        total *= _count(match.group(1))
        if total > MAX_SHARD_NAMES:
            break
    return total


def expand_braces(pattern: str) -> list[str]:
    """Every string a brace pattern names, in order: "{a,b}" lists, "{000..012}" zero-padded integer ranges.

    At most MAX_SHARD_NAMES in all, counted before any is made (`name_count`).
    """
    if name_count(pattern) > MAX_SHARD_NAMES:
        raise ValueError(f"brace pattern {pattern[:200]!r} names more than the limit of {MAX_SHARD_NAMES} shards")
    groups = list(_BRACE.finditer(pattern))
    parts, start = [], 0
    for match in groups:
        parts += [[pattern[start : match.start()]], _choices(match.group(1))]
        start = match.end()
    parts.append([pattern[start:]])
    return ["".join(names) for names in itertools.product(*parts)]
