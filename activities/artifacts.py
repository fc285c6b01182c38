"""The artifact store: big payloads on a shared directory, passed by reference.

The store is private to the worker's user: its directories are made 0700 and its
files 0600, and every file is scrubbed of the worker's secret values before it is
written (see :mod:`activities.secrets`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from temporalio.exceptions import ApplicationError

from activities.secrets import Scrubber
from models.common import ArtifactRef

DIR_MODE = 0o700
FILE_MODE = 0o600


def file_ref(path: Path, commit: str | None = None) -> ArtifactRef:
    """An :class:`ArtifactRef` for an existing file (absolute path, SHA-256, size).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    data = path.read_bytes()
    return ArtifactRef(
        path=str(path.resolve()),
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        commit=commit,
    )


class ArtifactStore:
    """A directory all workers share; files are written atomically, privately
    (directories 0700, files 0600) and scrubbed of secret values.

    Args:
        root: the store's directory (created 0700 on the first write; an existing
            one is set to 0700 then).
        scrubber: replaces the worker's secret values with ``***`` in what is
            written; None writes the bytes as given.
    """

    def __init__(self, root: Path, scrubber: Scrubber | None = None) -> None:
        self.root = root
        self.scrubber = scrubber
        self._private = False

    def write(self, relpath: str, data: bytes | str) -> ArtifactRef:
        """Write ``data`` to ``root/relpath`` atomically and return its reference.

        Writing the same bytes again (a retried activity) gives the same reference.
        Secret values in ``data`` are replaced by ``***`` first (the reference
        describes the scrubbed bytes); directories made are 0700, the file 0600.

        Raises:
            ValueError: ``relpath`` is absolute or leaves the store.
        """
        target = (self.root / relpath).resolve()
        if Path(relpath).is_absolute() or not target.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact path {relpath!r} must be relative and inside the store")
        raw = data.encode() if isinstance(data, str) else data
        if self.scrubber:
            raw = self.scrubber.data(raw)
        self._make_dirs(target.parent)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # an old temporary file keeps its mode otherwise
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(raw)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        return file_ref(target)

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and its missing parents up to the root, each 0700."""
        root = self.root.resolve()
        if not self._private:
            root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(root, DIR_MODE)
            self._private = True
        missing = []
        cur = directory
        while cur != root and not cur.exists():
            missing.append(cur)
            cur = cur.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=DIR_MODE)
            except FileExistsError:
                pass  # a parallel activity made it

    def read(self, ref: ArtifactRef) -> bytes:
        """The bytes of an artifact of this store, checked against its SHA-256.

        Raises:
            ValueError: the path is not inside the store, or the file changed since
                the reference was made.
            OSError: the file cannot be read (e.g. it was removed).
        """
        path = Path(ref.path).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact {ref.path} is not in the artifact store {self.root}")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ValueError(f"artifact {ref.path} changed since it was written (sha256 mismatch)")
        return data

    def read_text(self, ref: ArtifactRef, what: str) -> str:
        """The text of an artifact of this store (UTF-8, undecodable bytes replaced),
        for an activity that was given it by reference; ``what`` names it in the error.

        Raises:
            ApplicationError: (non-retryable, ``DocumentUnavailable``) ``<what> cannot
                be read: <reason>``: the artifact is outside the store, missing or
                changed since it was written (see :meth:`read`).
        """
        try:
            return self.read(ref).decode("utf-8", "replace")
        except (OSError, ValueError) as err:
            raise ApplicationError(f"{what} cannot be read: {err}", type="DocumentUnavailable",
                                   non_retryable=True) from None
