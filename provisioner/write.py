"""Safe writes: a rendered tree swapped in atomically, files written atomically, runs serialised.

A re-render writes only the files that changed: unchanged files are hard-linked from the current
tree into the new one, then the two directories are exchanged with ``renameat2(RENAME_EXCHANGE)``
(one atomic step on Linux; a two-rename fallback elsewhere). A crash of the process leaves the
previous tree intact. The tree is not fsynced: it is derived data that every run compares byte for
byte with a fresh render, so a tree damaged by a power loss is rewritten by the next render. The lock
file, which is not derived, is written with fsync before its rename.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from .errors import InputError

_RENAME_EXCHANGE = 2
# Creating a file is mostly kernel time (inode, directory entry, journal), and os.open/os.link release
# the GIL: big trees are written by a few threads (~2x faster at 20 000 files on 2 cores). Small trees
# stay on one thread, where the pool would cost more than it saves.
_PARALLEL_MIN_FILES = 512
_WRITERS = 4
# Every rendered tree carries this file. A render replaces its output directory as a whole, so it
# refuses a non-empty directory without it: `--out ~` or `--out inventories/lab` must never wipe data.
MARKER = ".provisioner-tree"
MARKER_TEXT = "Rendered by provisioner. This directory is replaced as a whole on every render; do not edit.\n"


def read_tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` as text, keyed by its relative path."""
    if not root.is_dir():
        return {}
    out: dict[str, str] = {}
    prefix = len(str(root)) + 1
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f == MARKER and dirpath == str(root):
                continue
            full = os.path.join(dirpath, f)
            # Raw reads and one decode: twice as fast as text-mode open() on 20 000 small files.
            # Exact bytes (no newline translation): a hand-edited CRLF file must show as changed.
            out[full[prefix:]] = _read_bytes(full).decode("utf-8", "surrogateescape")
    return out


def _read_bytes(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _write_new(path: str, text: str) -> None:
    """Create ``path`` (which must not exist) holding ``text`` as UTF-8; mode 0666 & ~umask, like open()."""
    data = memoryview(text.encode("utf-8"))
    with open(path, "xb", buffering=0) as fh:  # unbuffered binary: no TextIOWrapper per file
        while data:
            data = data[fh.write(data):]


def write_file_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def write_tree(root: Path, artifacts: dict[str, str], current: dict[str, str] | None = None) -> int:
    """Make ``root`` hold exactly ``artifacts``. Returns how many files were written."""
    root = root.resolve() if root.exists() else root.absolute()
    check_replaceable(root)
    if current is None:
        current = read_tree(root)
    if current == artifacts and root.is_dir() and (root / MARKER).is_file():
        return 0
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.new-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    written = 0
    try:
        # Plain string paths and one mkdir per directory: at 10 000 nodes the syscalls are the cost.
        tmp_s, root_s = str(tmp), str(root)
        made: set[str] = {""}
        os.mkdir(tmp_s)
        _write_new(f"{tmp_s}/{MARKER}", MARKER_TEXT)
        jobs: list[Callable[[], object]] = []
        for rel, text in artifacts.items():
            directory = rel.rpartition("/")[0]
            if directory not in made:
                _mkdirs(tmp_s, directory, made)
            dest = f"{tmp_s}/{rel}"
            if current.get(rel) == text:
                jobs.append(partial(os.link, f"{root_s}/{rel}", dest))
            else:
                jobs.append(partial(_write_new, dest, text))
                written += 1
        _run_all(jobs)
        if root.is_dir():
            if not _exchange(tmp, root):
                old = root.with_name(f".{root.name}.old-{os.getpid()}")
                os.rename(root, old)
                try:
                    os.rename(tmp, root)
                except BaseException:
                    os.rename(old, root)  # put the previous tree back
                    raise
                tmp = old
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _run_all(jobs: list[Callable[[], object]]) -> None:
    """Run every job; the first failure is raised once the jobs already started have ended."""
    if len(jobs) < _PARALLEL_MIN_FILES:
        for job in jobs:
            job()
        return
    chunks = [jobs[i:i + 64] for i in range(0, len(jobs), 64)]
    pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="write_tree")
    try:
        for _ in pool.map(_run_chunk, chunks):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_chunk(chunk: list[Callable[[], object]]) -> None:
    for job in chunk:
        job()


def check_replaceable(root: Path) -> None:
    """Refuse to replace anything that is not an earlier provisioner output tree (or empty/absent)."""
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: output path exists and is not a directory")
    if root.is_dir() and not (root / MARKER).is_file() and any(root.iterdir()):
        raise InputError(f"{root}: refusing to replace a non-empty directory that provisioner did not render "
                         f"(no {MARKER} in it); choose an empty or new --out directory")


def _mkdirs(base: str, directory: str, made: set[str]) -> None:
    parent = directory.rpartition("/")[0]
    if parent not in made:
        _mkdirs(base, parent, made)
    os.mkdir(f"{base}/{directory}")
    made.add(directory)


@contextlib.contextmanager
def site_lock(site_dir: Path, wait: bool = True) -> Iterator[None]:
    """Serialise runs that write a site's lock file or rendered tree."""
    path = site_dir / ".provisioner.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"{site_dir}: cannot take the run lock {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise InputError(f"{site_dir}: another provisioner run holds {path}") from None
        yield
    finally:
        os.close(fd)
