"""The artifact store: big payloads on a shared directory, passed by reference."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from models.common import ArtifactRef


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
    """A directory all workers share; files are written atomically.

    Args:
        root: the store's directory (created when missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relpath: str, data: bytes | str) -> ArtifactRef:
        """Write ``data`` to ``root/relpath`` atomically and return its reference.

        Writing the same bytes again (a retried activity) gives the same reference.

        Raises:
            ValueError: ``relpath`` is absolute or leaves the store.
        """
        target = (self.root / relpath).resolve()
        if Path(relpath).is_absolute() or not target.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact path {relpath!r} must be relative and inside the store")
        raw = data.encode() if isinstance(data, str) else data
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, target)
        return file_ref(target)

    def read(self, ref: ArtifactRef) -> bytes:
        """The bytes of an artifact, checked against its SHA-256.

        Raises:
            ValueError: the file changed since the reference was made.
        """
        data = Path(ref.path).read_bytes()
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ValueError(f"artifact {ref.path} changed since it was written (sha256 mismatch)")
        return data
