"""Safe file output: checks up front, staged writes renamed into place last, normal permissions.

Every file or folder yolocc writes is first written under a recognisable hidden name in the
destination folder (``.NAME.yolocc-PID-XXXX.partial``) and renamed over the destination only when
the whole step succeeded, so a failure leaves nothing new behind. Partial names left by a killed
run are removed by the next write into the same folder. Output gets the umask's permissions, and
an overwritten file keeps its mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UsageError

PARTIAL_SUFFIX = ".partial"
_PARTIAL = re.compile(r"^\..+\.yolocc-(\d+)-[A-Za-z0-9_]+\.partial$")
REPORT_SUFFIXES = (".json", ".md")


def check_writable(path: str | os.PathLike, folder_ok: bool = False) -> Path:
    """Fail early, with one clear line, if ``path`` cannot be written (``folder_ok``: the output is
    a folder, so an existing folder there is replaced)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir() and not folder_ok:
        raise UsageError(f"output path '{p}' is a directory")
    if p.exists() and not p.is_dir() and folder_ok:
        raise UsageError(f"output path '{p}' is a file; this output is a folder")
    if not parent.exists():
        raise UsageError(f"cannot write '{p}': folder '{parent}' does not exist")
    if not parent.is_dir():
        raise UsageError(f"cannot write '{p}': '{parent}' is a file, not a folder")
    try:  # permission bits alone do not tell (root, read-only mounts, /proc): try it
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".yolocc-probe-")
    except OSError:
        raise UsageError(f"cannot write '{p}': folder '{parent}' is not writable") from None
    os.close(fd)
    os.unlink(probe)
    return p


def check_readable(paths: dict[str, str | os.PathLike | None]) -> None:
    """Each named path (``{"--data": path, ...}``; None: not given) exists and is readable: workers
    read them again, so a missing one fails before any trial runs."""
    for what, path in paths.items():
        if path is None:
            continue
        p = Path(path)
        if not p.exists():
            raise UsageError(f"{what} '{path}' does not exist")
        if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
            raise UsageError(f"{what} '{path}' is not readable")


def check_report_path(path: str | os.PathLike) -> Path:
    if Path(path).suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(f"--report path '{path}' must end in .json or .md")
    return check_writable(path)


def refuse_input_overwrite(model: Any, output: str | os.PathLike) -> None:
    """An output that resolves to the input model (or inside it) would destroy it: refuse. ``model``
    is a path, or a loaded ``ModelIR`` (its ``source``)."""
    model = getattr(model, "source", model)
    if not isinstance(model, (str, os.PathLike)) or not Path(model).exists():
        return
    src, dest = Path(model).resolve(), Path(output).resolve()
    if dest == src or src in dest.parents:
        raise UsageError(f"output '{output}' is the input model '{model}'; choose another output path")


def _umask() -> int:
    """The process umask, read without changing it (Linux), else with the set-and-restore dance."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(dest: Path, is_dir: bool) -> int:
    if dest.exists() and not is_dir:
        return dest.stat().st_mode & 0o7777
    return (0o777 if is_dir else 0o666) & ~_umask()


def remove_stale_partials(folder: Path) -> None:
    """Delete partial outputs of runs that no longer exist (killed mid-write)."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            m = _PARTIAL.match(entry.name)
            if not m or _alive(int(m.group(1))):
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


@contextlib.contextmanager
def staged(path: str | os.PathLike, folder_ok: bool = False) -> Iterator[Path]:
    """Yield a partial path next to ``path`` (nothing exists there yet: write a file or a folder);
    on success it replaces ``path``, on any failure it is removed."""
    dest = check_writable(path, folder_ok)
    folder = dest.parent if str(dest.parent) else Path(".")
    remove_stale_partials(folder)
    try:
        tmp_dir = tempfile.mkdtemp(prefix=f".{dest.name}.yolocc-{os.getpid()}-", suffix=PARTIAL_SUFFIX, dir=folder)
    except OSError as e:
        raise UsageError(f"cannot write '{dest}': {e.strerror or e}") from e
    tmp = Path(tmp_dir)
    tmp.rmdir()  # the name is reserved; the writer creates a file or a folder there
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to '{tmp}'")
        os.chmod(tmp, _mode_for(dest, tmp.is_dir()))
        if tmp.is_dir() and dest.exists():
            old = dest.with_name(f".{dest.name}.yolocc-{os.getpid()}-old{PARTIAL_SUFFIX}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with staged(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with staged(path) as tmp:
        writer(tmp)
    return Path(path)


def artifact_facts(path: Path) -> dict[str, Any]:
    """Size and sha256 of a file artifact, or of every file of a folder artifact (sorted by name)."""
    h = hashlib.sha256()
    size = 0
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        blob = f.read_bytes()
        size += len(blob)
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        h.update(blob)
    return {"size_bytes": size, "sha256": h.hexdigest()}
