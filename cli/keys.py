"""A reviewer's SSH keys: where they are found and how a gate decision is signed.

Keys come from ``--key PATH`` (a private key file, or a ``.pub`` whose private key
is in ssh-agent), else from ssh-agent (``SSH_AUTH_SOCK``, listed by ``ssh-add -L``)
and from ``~/.ssh/*.pub`` that have their private key beside them. Signing uses
``ssh-keygen -Y sign`` (it asks for a passphrase, and talks to the agent), or, when
ssh-keygen is not installed, signs an unencrypted key file in Python. Both make the
same SSHSIG signature (``models/signatures.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from cli.common import CliError
from models.common import GateDecision, GateInfo, Verdict
from models.learning import OVERRIDE_GATE
from models.signatures import (
    ED25519,
    KEY_PREFIX,
    NAMESPACE,
    DecisionSignature,
    GateSigners,
    SignatureError,
    decision_message,
    fingerprint,
    parse_public_key,
    principal_allowed,
    public_key_of_private,
    sign,
    signers_for,
)

SSH_TIMEOUT = 120  # seconds: ssh-keygen may wait for a passphrase or an agent confirmation


@dataclass(frozen=True)
class ReviewerKey:
    """One of the reviewer's keys.

    Attributes:
        public: ``ssh-ed25519 AAAA...`` (no comment).
        origin: where it was found (``--key PATH``, ``ssh-agent``, ``~/.ssh/x.pub``).
        comment: the key's comment, for people.
        private_path: the private key file to sign with; None = sign through ssh-agent.
    """

    public: str
    origin: str
    comment: str = ""
    private_path: Path | None = None

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
        return fingerprint(self.public)


def _public_line(text: str, origin: str) -> tuple[str, str]:
    parts = text.split(maxsplit=2)
    try:
        parse_public_key(text)
    except SignatureError as err:
        raise CliError(f"{origin}: {err}") from None
    return f"{parts[0]} {parts[1]}", parts[2].strip() if len(parts) > 2 else ""


def key_from_path(path: Path) -> ReviewerKey:
    """The key ``--key PATH`` names: a private key file, or a public key whose private
    half is in ssh-agent.

    Raises:
        CliError: unreadable, or not an OpenSSH ed25519 key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"--key {path}: {getattr(err, 'strerror', None) or err}") from None
    origin = f"--key {path}"
    if "PRIVATE KEY-----" in text:
        try:
            public = public_key_of_private(text)
        except SignatureError as err:
            raise CliError(f"{origin}: {err}") from None
        comment = ""
        pub_file = path.with_name(path.name + ".pub")
        if pub_file.is_file():
            comment = _public_line(pub_file.read_text(encoding="utf-8"), str(pub_file))[1]
        return ReviewerKey(public, origin, comment, private_path=path)
    public, comment = _public_line(text, origin)
    return ReviewerKey(public, origin + " (ssh-agent)", comment)


def agent_keys() -> list[ReviewerKey]:
    """The ed25519 keys ssh-agent holds (none without SSH_AUTH_SOCK or ssh-add)."""
    if not os.environ.get("SSH_AUTH_SOCK") or not shutil.which("ssh-add"):
        return []
    try:
        out = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    keys = []
    for line in out.splitlines():
        if line.startswith(ED25519 + " "):
            public, comment = _public_line(line, "ssh-agent")
            keys.append(ReviewerKey(public, "ssh-agent", comment))
    return keys


def home_keys(ssh_dir: Path | None = None) -> list[ReviewerKey]:
    """``~/.ssh/*.pub`` ed25519 keys whose private key file is beside them."""
    ssh_dir = ssh_dir or Path.home() / ".ssh"
    keys = []
    for pub in sorted(ssh_dir.glob("*.pub")) if ssh_dir.is_dir() else []:
        private = pub.with_suffix("")
        try:
            text = pub.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not private.is_file() or not text.startswith(ED25519 + " "):
            continue
        try:
            public, comment = _public_line(text, str(pub))
        except CliError:
            continue
        keys.append(ReviewerKey(public, str(pub), comment, private_path=private))
    return keys


def reviewer_keys(key_arg: str | None) -> list[ReviewerKey]:
    """The keys to try: ``--key`` alone when given, else the agent's then ``~/.ssh``'s
    (one entry per public key, the agent's first)."""
    if key_arg:
        return [key_from_path(Path(key_arg).expanduser())]
    seen: set[str] = set()
    keys = []
    for key in agent_keys() + home_keys():
        if key.public not in seen:
            seen.add(key.public)
            keys.append(key)
    return keys


def sign_bytes(key: ReviewerKey, message: bytes) -> str:
    """An armored SSHSIG signature of ``message`` in the gate-decision namespace.

    Raises:
        CliError: ssh-keygen failed (wrong passphrase, key not in the agent), or it is
            missing and the key cannot be used without it.
    """
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        if key.private_path is None:
            raise CliError("signing with an ssh-agent key needs ssh-keygen: install "
                           "openssh-client, or pass --key PRIVATE_KEY_FILE")
        try:
            private = load_ssh_private_key(key.private_path.read_bytes(), password=None)
        except (TypeError, ValueError) as err:
            raise CliError(f"{key.origin}: cannot sign without ssh-keygen ({err}); install "
                           "openssh-client") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise CliError(f"{key.origin}: not an ed25519 key")
        return sign(private, message)
    with tempfile.TemporaryDirectory(prefix="gate-sign-") as tmp:
        key_file = key.private_path
        if key_file is None:  # ssh-keygen signs with the agent when given the public key
            key_file = Path(tmp) / "agent_key.pub"
            key_file.write_text(key.public + "\n", encoding="utf-8")
        try:
            proc = subprocess.run([keygen, "-Y", "sign", "-f", str(key_file), "-n", NAMESPACE],
                                  input=message, capture_output=True, timeout=SSH_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise CliError(f"ssh-keygen did not sign within {SSH_TIMEOUT} s") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CliError(f"ssh-keygen could not sign with {key.origin}: "
                       f"{detail[-1] if detail else 'exit ' + str(proc.returncode)}")
    return proc.stdout.decode("ascii")


def accepted_principals(key: ReviewerKey, signers: GateSigners, gate: GateInfo | None,
                        now: datetime) -> list[str]:
    """The ``key:`` principals ``key`` may decide ``gate`` as (any gate when None)."""
    return principals_among(key, signers, None if gate is None else gate.allowed_actors, now)


def principals_among(key: ReviewerKey, signers: GateSigners, allowed: list[str] | None,
                     now: datetime) -> list[str]:
    """The ``key:`` principals ``key`` may sign as that ``allowed`` admits (None or
    empty: every one; see ``models.signatures.principal_allowed``)."""
    names = [KEY_PREFIX + p for p in signers_for(signers, key.public, now)]
    return [n for n in names if not allowed or principal_allowed(n, allowed)]


def choose_signer(keys: list[ReviewerKey], signers: GateSigners, gate: GateInfo,
                  actor: str | None, now: datetime) -> tuple[ReviewerKey, str]:
    """The first key allowed to decide ``gate``, and the principal it decides as.

    Raises:
        CliError: ``actor`` is not a ``key:`` principal; no key is allowed; or the key
            may decide as several principals and ``actor`` does not pick one.
    """
    return choose_key(keys, signers, gate.allowed_actors, actor, now, f"decide {gate.gate}")


def choose_key(keys: list[ReviewerKey], signers: GateSigners, allowed: list[str],
               actor: str | None, now: datetime, what: str) -> tuple[ReviewerKey, str]:
    """The first of ``keys`` that may sign as a principal ``allowed`` admits, and that
    principal (``actor`` picks one); ``what`` names the act in messages (``decide
    GATE_1``, ``override``).

    Raises:
        CliError: see :func:`choose_signer`.
    """
    if actor is not None and not actor.startswith(KEY_PREFIX):
        raise CliError(f"the worker requires signed decisions, so --as {actor} is refused: "
                       "a decision is made as key:<principal> by signing it (--key PATH or "
                       "ssh-agent)")
    for key in keys:
        names = principals_among(key, signers, allowed, now)
        if actor is not None:
            names = [n for n in names if n == actor]
        if len(names) > 1:
            raise CliError(f"{key.origin} may {what} as {', '.join(names)}: "
                           "pick one with --as")
        if names:
            return key, names[0]
    tried = "; ".join(f"{k.origin} {k.fingerprint}" for k in keys) or "none found"
    who = ", ".join(allowed) or "any allowed signer"
    raise CliError(f"none of your keys may {what}"
                   + (f" as {actor}" if actor else "") + f" (allowed: {who}; keys tried: "
                   f"{tried}); `python starter.py keys ID` shows which keys the run accepts")


def signed_decision(*, workflow_id: str, run_id: str, gate: GateInfo, verdict: Verdict,
                    comment: str, content: str | None, keys: list[ReviewerKey],
                    signers: GateSigners, actor: str | None) -> GateDecision:
    """A GateDecision signed by the first of ``keys`` the gate accepts, bound to
    ``workflow_id``, ``run_id`` (``cli.gates.signing_run_id``: the run the gate opened
    in) and the gate's name and opening number.

    Raises:
        CliError: see :func:`choose_signer` and :func:`sign_bytes`.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    key, principal = choose_signer(keys, signers, gate, actor, now)
    message = decision_message(workflow_id=workflow_id, run_id=run_id, gate=gate.gate,
                               opening=gate.opening, verdict=verdict.value, actor=principal,
                               comment=comment, content=content, signed_at=now)
    signature = DecisionSignature(workflow_id=workflow_id, run_id=run_id, opening=gate.opening,
                                  signed_at=now, sshsig=sign_bytes(key, message))
    return GateDecision(gate=gate.gate, verdict=verdict, actor=principal, comment=comment,
                        content=content, signature=signature)


def signed_override(*, workflow_id: str, run_id: str, number: int, kind: str, reason: str,
                    content: str | None, keys: list[ReviewerKey], signers: GateSigners,
                    teachers: list[str], actor: str | None) -> tuple[str, DecisionSignature]:
    """The principal and signature of a learning-loop teacher override: the canonical
    decision of ``models.signatures.decision_message`` with ``OVERRIDE_GATE`` as the
    gate, the loop's next override ``number`` as the opening, the override's ``kind``
    (its update name) as the verdict, ``reason`` as the comment and its parameters
    (``TeacherOverride.signed_content``) as the content, ``run_id`` the loop's
    ``LearningProgress.override_run_id``; signed by the first of ``keys`` that may
    sign as one of ``teachers`` (empty: any allowed signer).

    Raises:
        CliError: see :func:`choose_key` and :func:`sign_bytes`.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    key, principal = choose_key(keys, signers, teachers, actor, now, "override")
    message = decision_message(workflow_id=workflow_id, run_id=run_id, gate=OVERRIDE_GATE,
                               opening=number, verdict=kind, actor=principal, comment=reason,
                               content=content, signed_at=now)
    return principal, DecisionSignature(workflow_id=workflow_id, run_id=run_id, opening=number,
                                        signed_at=now, sshsig=sign_bytes(key, message))
