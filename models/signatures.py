"""Signed gate decisions: SSH signatures (SSHSIG) over a canonical decision,
checked against an ``allowed_signers`` file. No I/O: the workflow sandbox imports
this module (passed through) and verifies decisions deterministically.

Formats, as OpenSSH defines them (``ssh-keygen -Y sign`` / ``-Y verify``, the
format git uses for SSH-signed commits):

* PROTOCOL.sshsig (openssh-portable): the armored signature
  ``-----BEGIN SSH SIGNATURE-----`` holds ``"SSHSIG" uint32(1) string(public key)
  string(namespace) string(reserved) string(hash algorithm) string(signature)``;
  the signature is made over ``"SSHSIG" string(namespace) string(reserved)
  string(hash algorithm) string(H(message))``. ``string`` is RFC 4251's
  uint32 length + bytes.
* ssh-keygen(1), ALLOWED SIGNERS: one line per key, ``principals [options]
  keytype base64-key [comment]``; principals are comma-separated; the options
  ``namespaces="a,b"``, ``valid-after="YYYYMMDD[HHMM[SS]][Z]"`` and
  ``valid-before=...`` are understood here; ``cert-authority`` and principal
  patterns (``*``, ``?``, ``!``) are refused when the file is parsed.

Only ed25519 keys (RFC 8709 ``ssh-ed25519``) are accepted.

Principals: a decision's actor is ``key:<principal>`` when it is proved by a
signature from a key the allowed signers list under ``<principal>``,
``github:<login>`` when GitHub authenticated it (a comment on the run's issue by
a user with write permission), or a bare name when nothing authenticates it
(only accepted while no signers are configured).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, Field

NAMESPACE = "gate-decision@durable-orchestrator"
"""The SSHSIG namespace of gate decisions (``ssh-keygen -Y sign -n``), so a signature
made for git commits or files cannot be replayed as a decision."""

KEY_PREFIX = "key:"
GITHUB_PREFIX = "github:"
ED25519 = "ssh-ed25519"
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
_MAGIC = b"SSHSIG"
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


class SignatureError(ValueError):
    """A signature, key or allowed-signers line that cannot be used; the message says why."""


# -- models -------------------------------------------------------------------


class AllowedSigner(BaseModel):
    """One line of an allowed_signers file.

    Attributes:
        principals: the names the key may sign as (``alice`` decides as ``key:alice``).
        key: the public key in OpenSSH form, ``ssh-ed25519 AAAA...`` (no comment).
        namespaces: the SSHSIG namespaces the key may sign in; None = any.
        valid_after: the key is valid from this time (UTC); None = always.
        valid_before: the key is valid until this time (UTC); None = forever.
        comment: the line's trailing comment, for people.
        line: the line number in the file (1-based), for messages.
    """

    principals: list[str]
    key: str
    namespaces: list[str] | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    comment: str = ""
    line: int = 0


class GateSigners(BaseModel):
    """The worker's allowed signers, as a run loaded them (kept in its history).

    Attributes:
        configured: whether the worker has GATE_SIGNERS; False = decisions are not
            authenticated (anyone who reaches the server decides).
        source: the file they came from, for messages.
        signers: the parsed lines.
    """

    configured: bool = False
    source: str = ""
    signers: list[AllowedSigner] = Field(default_factory=list)


class DecisionSignature(BaseModel):
    """What binds a signed decision to one gate opening of one run, and the signature.

    Attributes:
        workflow_id: the workflow the decision is for.
        run_id: the run the gate opening began in (``GateInfo.signing_run_id``), which
            stays the same when the run continues as new; the run that is current is
            taken too (what signers older than ``signing_run_id`` name). A decision
            signed for a run of another workflow chain is a replay.
        opening: the gate's opening number (``GateInfo.opening``, kept across
            continue-as-new); a decision signed for an earlier round of the gate is a
            replay.
        signed_at: when the reviewer signed (UTC, whole seconds in the signed text).
        sshsig: the armored SSH signature (``-----BEGIN SSH SIGNATURE-----``) over
            :func:`decision_message`, namespace :data:`NAMESPACE`.
    """

    workflow_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    opening: int = Field(ge=1)
    signed_at: AwareDatetime
    sshsig: str = Field(min_length=1, max_length=4000)


# -- the canonical decision ----------------------------------------------------


def sha256_hex(text: str | None) -> str | None:
    """Hex SHA-256 of ``text`` as UTF-8, or None for None."""
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def decision_message(*, workflow_id: str, run_id: str, gate: str, opening: int, verdict: str,
                     actor: str, comment: str, content: str | None,
                     signed_at: datetime) -> bytes:
    """The exact bytes a reviewer signs for one decision.

    Canonical JSON (sorted keys, no spaces, ASCII) of: a version, the workflow and run
    ID, the gate and its opening number, the verdict, the actor, the SHA-256 of the
    comment and of the content (null when there is none) and the signing time in UTC
    to the second. Any change to one of these after signing breaks the signature.
    """
    return json.dumps({
        "v": 1, "workflow_id": workflow_id, "run_id": run_id, "gate": gate,
        "opening": opening, "verdict": verdict, "actor": actor,
        "comment_sha256": sha256_hex(comment), "content_sha256": sha256_hex(content),
        "signed_at": signed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- principals ----------------------------------------------------------------


def principal_allowed(actor: str, allowed: list[str]) -> bool:
    """Whether ``actor`` is one of the ``allowed`` reviewers of a gate.

    An entry matches the same principal (``key:alice``, ``github:alice``); a bare
    entry (``alice``) matches that name in any namespace (``alice``, ``key:alice``,
    ``github:alice``). An empty list allows everyone.
    """
    if not allowed:
        return True
    name = actor.split(":", 1)[1] if actor.startswith((KEY_PREFIX, GITHUB_PREFIX)) else actor
    return any(entry == actor or (":" not in entry and entry == name) for entry in allowed)


# -- SSH wire format -----------------------------------------------------------


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SignatureError("truncated SSH data")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def string(self) -> bytes:
        return self.take(self.uint32())

    def done(self) -> bool:
        return self.pos == len(self.data)


def _ed25519_blob(raw: bytes) -> bytes:
    return _string(ED25519.encode()) + _string(raw)


def _raw_from_blob(blob: bytes) -> bytes:
    r = _Reader(blob)
    kind = r.string().decode("ascii", "replace")
    if kind != ED25519:
        raise SignatureError(f"key type {kind} is not supported (use an ed25519 key)")
    raw = r.string()
    if len(raw) != 32 or not r.done():
        raise SignatureError("malformed ssh-ed25519 public key")
    return raw


def parse_public_key(text: str) -> bytes:
    """The 32 raw bytes of an OpenSSH ed25519 public key line (``ssh-ed25519 AAAA... [comment]``).

    Raises:
        SignatureError: not an ed25519 public key.
    """
    parts = text.split()
    if len(parts) < 2:
        raise SignatureError("not an OpenSSH public key (expected `ssh-ed25519 AAAA...`)")
    if parts[0] != ED25519:
        raise SignatureError(f"key type {parts[0]} is not supported (use an ed25519 key)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise SignatureError("the public key is not valid base64") from None
    return _raw_from_blob(blob)


def public_key_line(raw: bytes) -> str:
    """``ssh-ed25519 AAAA...`` for 32 raw public-key bytes."""
    return f"{ED25519} {base64.b64encode(_ed25519_blob(raw)).decode()}"


def fingerprint(key: str) -> str:
    """The key's ``SHA256:...`` fingerprint, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def public_key_of_private(text: str) -> str:
    """The public key line of an OpenSSH private key file (``openssh-key-v1``),
    read from the file's unencrypted header, so no passphrase is needed.

    Raises:
        SignatureError: not an OpenSSH private key, or not ed25519.
    """
    body = _dearmor(text, "-----BEGIN OPENSSH PRIVATE KEY-----",
                    "-----END OPENSSH PRIVATE KEY-----", "OpenSSH private key")
    if not body.startswith(b"openssh-key-v1\0"):
        raise SignatureError("not an OpenSSH private key")
    r = _Reader(body[len(b"openssh-key-v1\0"):])
    r.string(), r.string(), r.string()  # cipher, kdf, kdf options
    if r.uint32() < 1:
        raise SignatureError("the private key file holds no key")
    return public_key_line(_raw_from_blob(r.string()))


# -- SSHSIG --------------------------------------------------------------------


def _dearmor(text: str, begin: str, end: str, what: str) -> bytes:
    text = text.strip()
    if not (text.startswith(begin) and text.endswith(end)):
        raise SignatureError(f"not an armored {what} ({begin} ... {end})")
    try:
        return base64.b64decode("".join(text[len(begin):-len(end)].split()), validate=True)
    except binascii.Error:
        raise SignatureError(f"the {what} is not valid base64") from None


def signed_data(message: bytes, namespace: str = NAMESPACE, hash_alg: str = "sha512") -> bytes:
    """The blob an SSHSIG signature is made over (PROTOCOL.sshsig, "Signed Data")."""
    return (_MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_alg.encode())
            + _string(_HASHES[hash_alg](message).digest()))


def sign(private_key: Ed25519PrivateKey, message: bytes, namespace: str = NAMESPACE) -> str:
    """An armored SSHSIG signature of ``message`` (what ``ssh-keygen -Y sign`` writes)."""
    raw_pub = private_key.public_key().public_bytes_raw()
    sig = private_key.sign(signed_data(message, namespace))
    blob = (_MAGIC + (1).to_bytes(4, "big") + _string(_ed25519_blob(raw_pub))
            + _string(namespace.encode()) + _string(b"") + _string(b"sha512")
            + _string(_string(ED25519.encode()) + _string(sig)))
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i:i + 70] for i in range(0, len(b64), 70)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


def verify(armored: str, message: bytes, namespace: str = NAMESPACE) -> str:
    """Check an armored SSHSIG signature of ``message`` in ``namespace``.

    Returns:
        The signing key's public key line (``ssh-ed25519 AAAA...``); whether that key
        may sign is the caller's question (:func:`signer_problem`).

    Raises:
        SignatureError: malformed, another namespace, not ed25519, or the signature
            does not match the message.
    """
    r = _Reader(_dearmor(armored, ARMOR_BEGIN, ARMOR_END, "SSH signature"))
    if r.take(6) != _MAGIC or r.uint32() != 1:
        raise SignatureError("not an SSHSIG version 1 signature")
    raw_pub = _raw_from_blob(r.string())
    signed_ns = r.string().decode("utf-8", "replace")
    r.string()  # reserved
    hash_alg = r.string().decode("ascii", "replace")
    sig_blob = r.string()
    if not r.done():
        raise SignatureError("trailing data after the signature")
    if signed_ns != namespace:
        raise SignatureError(f"signed for namespace {signed_ns!r}, not {namespace!r}")
    if hash_alg not in _HASHES:
        raise SignatureError(f"hash algorithm {hash_alg!r} is not sha256 or sha512")
    s = _Reader(sig_blob)
    if s.string() != ED25519.encode():
        raise SignatureError("the signature is not ssh-ed25519")
    sig = s.string()
    try:
        Ed25519PublicKey.from_public_bytes(raw_pub).verify(
            sig, signed_data(message, namespace, hash_alg))
    except InvalidSignature:
        raise SignatureError("the signature does not match the decision (altered after "
                             "signing, or signed for another run, gate or round)") from None
    return public_key_line(raw_pub)


# -- allowed signers ------------------------------------------------------------


def _split_fields(line: str) -> list[str]:
    """Whitespace-separated fields; double quotes group (and may hold spaces and commas)."""
    fields, cur, quoted, started = [], [], False, False
    for ch in line:
        if ch == '"':
            quoted, started = not quoted, True
            cur.append(ch)
        elif ch.isspace() and not quoted:
            if started:
                fields.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if quoted:
        raise SignatureError("unterminated quote")
    if started:
        fields.append("".join(cur))
    return fields


def _split_options(text: str) -> list[str]:
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [o for o in out if o]


def _ssh_time(value: str) -> datetime:
    """``YYYYMMDD[HHMM[SS]][Z]`` as ssh-keygen reads it (taken as UTC here)."""
    digits = value.rstrip("Zz")
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if len(digits) not in formats or not digits.isdigit():
        raise SignatureError(f"bad time {value!r} (expected YYYYMMDD[HHMM[SS]][Z])")
    return datetime.strptime(digits, formats[len(digits)]).replace(tzinfo=UTC)


def parse_allowed_signers(text: str) -> list[AllowedSigner]:
    """The lines of an allowed_signers file (see the module docstring for the format).

    Raises:
        SignatureError: a line that cannot be used, named by its number.
    """
    signers = []
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            signers.append(_parse_line(line, number))
        except SignatureError as err:
            raise SignatureError(f"line {number}: {err}") from None
    return signers


def _parse_line(line: str, number: int) -> AllowedSigner:
    fields = _split_fields(line)
    if len(fields) < 3:
        raise SignatureError("expected `principals [options] ssh-ed25519 AAAA...`")
    principals = [p for p in fields[0].strip('"').split(",") if p]
    for p in principals:
        if any(c in p for c in "*?!") or ":" in p:
            raise SignatureError(f"principal {p!r}: patterns and ':' are not supported")
    if not principals:
        raise SignatureError("no principals")
    rest = fields[1:]
    signer: dict = {"principals": principals, "line": number}
    if not rest[0].startswith(("ssh-", "ecdsa-", "sk-")):
        for option in _split_options(rest.pop(0)):
            name, _, value = option.partition("=")
            value = value.strip('"')
            name = name.lower()
            if name == "namespaces":
                signer["namespaces"] = [v for v in value.split(",") if v]
            elif name == "valid-after":
                signer["valid_after"] = _ssh_time(value)
            elif name == "valid-before":
                signer["valid_before"] = _ssh_time(value)
            elif name == "cert-authority":
                raise SignatureError("cert-authority is not supported; list each key")
            else:
                raise SignatureError(f"unknown option {name!r}")
    if len(rest) < 2:
        raise SignatureError("no key after the principals and options")
    key = f"{rest[0]} {rest[1]}"
    parse_public_key(key)
    return AllowedSigner(**signer, key=key, comment=" ".join(rest[2:]))


def signers_for(signers: GateSigners, key: str, at: datetime,
                namespace: str = NAMESPACE) -> list[str]:
    """The principals ``key`` may sign as in ``namespace`` at time ``at``
    (every matching line counts, as in ssh-keygen)."""
    raw = parse_public_key(key)
    names: list[str] = []
    for s in signers.signers:
        if parse_public_key(s.key) != raw:
            continue
        if s.namespaces is not None and namespace not in s.namespaces:
            continue
        if (s.valid_after and at < s.valid_after) or (s.valid_before and at >= s.valid_before):
            continue
        names += [p for p in s.principals if p not in names]
    return names


def signature_problem(*, signers: GateSigners, workflow_id: str, run_id: str, gate: str,
                      opening: int, verdict: str, actor: str, comment: str,
                      content: str | None, signature: DecisionSignature | None,
                      now: datetime, opened_run_id: str = "") -> str | None:
    """Why a decision's signature does not authenticate ``actor`` at this gate opening,
    or None when it does. Deterministic (no I/O, no clock: ``now`` is workflow time).

    ``run_id`` is the current run; ``opened_run_id`` the run the gate opening began in
    (``GateInfo.signing_run_id``; empty or equal to ``run_id`` when it opened in this
    run). A decision may name either, so one signed before a continue-as-new is taken.

    Checks, in order: a signature is there; it was made for this workflow, one of those
    runs and this gate opening (else it is a replay: another workflow chain, or an
    earlier round); the actor is a ``key:`` principal; the SSHSIG is valid over the
    canonical decision (else it was altered, forged, or signed for another gate); the
    signing key is listed for that principal and the namespace and time.
    """
    if signature is None:
        return (f"gate {gate!r} requires a signed decision ({signers.source or 'GATE_SIGNERS'}"
                " is set on the worker): decide with `approve/reject/revise --key PATH` or "
                "an ssh-agent key")
    runs = [run_id] + ([opened_run_id] if opened_run_id and opened_run_id != run_id else [])
    if signature.workflow_id != workflow_id or signature.run_id not in runs:
        expected = run_id if len(runs) == 1 else (
            f"{opened_run_id}, the run gate {gate!r} opened in, or the current run {run_id}")
        return (f"replayed: the decision was signed for {signature.workflow_id} run "
                f"{signature.run_id}, not this run ({expected})")
    if signature.opening != opening:
        return (f"replayed: the decision was signed for opening {signature.opening} of gate "
                f"{gate!r}; it is open now as opening {opening}")
    if not actor.startswith(KEY_PREFIX):
        return f"a signed decision's actor is key:<principal>, not {actor!r}"
    message = decision_message(workflow_id=workflow_id, run_id=signature.run_id, gate=gate,
                               opening=opening, verdict=verdict, actor=actor, comment=comment,
                               content=content, signed_at=signature.signed_at)
    try:
        key = verify(signature.sshsig, message)
    except SignatureError as err:
        return f"bad signature: {err}"
    principal = actor[len(KEY_PREFIX):]
    allowed = signers_for(signers, key, now)
    if principal not in allowed:
        also = f" (it signs as {', '.join(KEY_PREFIX + p for p in allowed)})" if allowed else ""
        return (f"the signing key {fingerprint(key)} is not allowed to sign as {actor} in "
                f"{signers.source or 'the allowed signers'}{also}")
    return None
