"""Atomic file output: write to a temp file beside the target, then rename.

Every file imcodec writes goes through :func:`atomic_output`, so an interrupted or failed run never
leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from imcodec.errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's directory; rename it onto ``path`` if the block succeeds.

    The temp file is removed if the block raises. The parent directory must exist. A symbolic link
    is written through (its target is replaced); an existing target that is not a regular file (a
    device such as /dev/stdout or /dev/null, a FIFO) is written into after the block succeeds, from a
    temp file in the system temp directory, rather than replaced. OS errors become an InputError
    naming the output.
    """
    path = Path(path)
    # written into, not replaced: devices, pipes (is_file follows links: /dev/stdout -> a pipe) and any
    # existing /dev or /proc path (/dev/stdout redirected to a file: the shell holds that file open)
    special = path.exists() and not path.is_dir() and (not path.is_file()
                                                       or str(path.absolute()).startswith(("/dev/", "/proc/")))
    if path.is_symlink() and not special:
        path = Path(os.path.realpath(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not special and not parent.is_dir():
        raise InputError(f"{path}: output directory {str(parent)!r} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=None if special else parent)
        os.close(fd)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            if special:
                with open(tmp_path, "rb") as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                tmp_path.unlink()
            else:
                os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual new-file mode
                os.replace(tmp_path, path)
        except OSError as exc:
            raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """Read a whole file, turning OS errors into an InputError that names the file."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


@contextlib.contextmanager
def temporary_directory(prefix: str = "imcodec-", base: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a fresh private directory (under ``base`` or the system temp dir); removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir=base) as name:
        yield Path(name)


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create an output directory (and parents) if needed."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create output directory ({exc.strerror})") from None
    return path


@contextlib.contextmanager
def staged_outputs(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a private staging directory inside ``folder`` (made, with its parents, if needed).

    When the block succeeds, every file written into the staging directory moves into ``folder``
    (replacing files of the same name); when it raises, they are removed, and so is ``folder`` if
    this call made it and it is empty. A failed multi-file run thus leaves no partial set behind.
    """
    folder = Path(folder)
    made = not folder.exists()
    ensure_dir(folder)
    try:
        stage = Path(tempfile.mkdtemp(prefix=".imcodec-", dir=folder))
    except OSError as exc:
        raise InputError(f"{folder}: cannot write ({exc.strerror})") from None
    try:
        yield stage
        try:
            for item in sorted(stage.iterdir()):
                os.replace(item, folder / item.name)
        except OSError as exc:
            raise InputError(f"{folder}: cannot write ({exc.strerror})") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)


def digest_files(paths: list[str], extra: bytes = b"") -> str:
    """SHA-256 (hex) over the contents of ``paths`` (in order, with their base names) and ``extra``."""
    import hashlib

    h = hashlib.sha256(extra)
    for p in paths:
        h.update(os.path.basename(p).encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def load_extension(folder: str | os.PathLike, name: str):
    """Load the compiled extension module ``name`` and its ``name.json`` manifest from ``folder``.

    Returns (module, manifest dict) or None when either file is missing or does not load.
    """
    import importlib.machinery
    import importlib.util
    import json

    folder = Path(folder)
    manifest_path = folder / f"{name}.json"
    if not manifest_path.is_file():
        return None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        lib = folder / f"{name}{suffix}"
        if lib.is_file():
            break
    else:
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        spec = importlib.util.spec_from_file_location(name, lib)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (OSError, ValueError, ImportError):
        return None
    return module, manifest


def install_extension(build_dir: str | os.PathLike, name: str, manifest: dict, target: str | os.PathLike) -> str:
    """Move the extension module ``name.*`` built in ``build_dir`` into ``target`` with its JSON manifest.

    Older libraries of the same group (same name up to the 16-digit digest) are removed. Returns the path.
    """
    import json

    build_dir, target = Path(build_dir), ensure_dir(target)
    built = [p for p in build_dir.iterdir() if p.name.startswith(name + ".") and p.suffix != ".json"]
    if len(built) != 1:
        raise InputError(f"{build_dir}: expected one compiled {name}.* module, found {[p.name for p in built]}")
    for old in target.iterdir():
        if old.name.startswith(name[:-16]) and not old.name.startswith(name + "."):
            old.unlink()
    write_bytes_atomic(target / built[0].name, built[0].read_bytes())
    write_text_atomic(target / f"{name}.json", json.dumps(manifest))
    return str(target / built[0].name)
