"""models/signatures.py: SSHSIG interop with OpenSSH's ssh-keygen, allowed_signers
parsing, and the refusal of unsigned, forged, replayed and altered decisions."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from activities.signers import read_gate_signers
from models.signatures import (
    NAMESPACE,
    DecisionSignature,
    GateSigners,
    SignatureError,
    decision_message,
    fingerprint,
    parse_allowed_signers,
    principal_allowed,
    public_key_line,
    public_key_of_private,
    sign,
    signature_problem,
    signers_for,
    verify,
)

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(
    SSH_KEYGEN is None, reason="ssh-keygen is not installed (apt-get install openssh-client)")
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def keygen(path: Path, comment: str = "") -> Path:
    """A new unencrypted ed25519 key pair at ``path`` / ``path.pub`` (by ssh-keygen)."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True)
    return path


def pub(key: Ed25519PrivateKey) -> str:
    return public_key_line(key.public_key().public_bytes_raw())


@needs_ssh_keygen
def test_ssh_keygen_signatures_verify_here_and_ours_verify_there(tmp_path):
    key = keygen(tmp_path / "alice", "alice@laptop")
    message = tmp_path / "decision.json"
    message.write_bytes(b'{"gate":"GATE_1"}')
    subprocess.run([SSH_KEYGEN, "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(message)],
                   check=True, capture_output=True)
    theirs = (tmp_path / "decision.json.sig").read_text()
    public = (tmp_path / "alice.pub").read_text()
    assert verify(theirs, message.read_bytes()) == " ".join(public.split()[:2])
    with pytest.raises(SignatureError, match="does not match"):
        verify(theirs, b'{"gate":"GATE_2"}')

    ours = sign(load_ssh_private_key(key.read_bytes(), None), message.read_bytes())
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'alice namespaces="{NAMESPACE}" {public}')
    (tmp_path / "ours.sig").write_text(ours)
    with message.open("rb") as stdin:
        check = subprocess.run(
            [SSH_KEYGEN, "-Y", "verify", "-f", str(allowed), "-I", "alice", "-n", NAMESPACE,
             "-s", str(tmp_path / "ours.sig")], stdin=stdin, capture_output=True, text=True,
            check=False)
    assert check.returncode == 0, check.stderr
    assert "Good" in check.stdout + check.stderr
    # ssh-keygen's fingerprint and the public key read from the private key file agree
    listed = subprocess.run([SSH_KEYGEN, "-l", "-f", str(tmp_path / "alice.pub")],
                            capture_output=True, text=True, check=True).stdout
    assert fingerprint(public) in listed
    assert public_key_of_private(key.read_text()) == " ".join(public.split()[:2])


def test_other_namespace_is_refused():
    key = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="namespace 'git'"):
        verify(sign(key, b"m", namespace="git"), b"m")


def test_allowed_signers_lines_options_and_errors(tmp_path):
    a, b = pub(Ed25519PrivateKey.generate()), pub(Ed25519PrivateKey.generate())
    text = (f"# reviewers\n\nalice,al {a} alice@laptop\n"
            f'bob namespaces="git,{NAMESPACE}",valid-before="20261201" {b}\n'
            f'carol namespaces="git" {b}\n')
    signers = GateSigners(configured=True, signers=parse_allowed_signers(text))
    assert [s.principals for s in signers.signers] == [["alice", "al"], ["bob"], ["carol"]]
    assert signers.signers[0].comment == "alice@laptop" and signers.signers[1].line == 4
    assert signers_for(signers, a, NOW) == ["alice", "al"]
    assert signers_for(signers, b, NOW) == []  # bob expired; carol only signs git
    assert signers_for(signers, b, NOW - timedelta(days=2)) == ["bob"]
    for bad, why in ((f"x cert-authority {a}", "cert-authority"), (f"*@corp {a}", "patterns"),
                     (f"key:x {a}", "patterns"), ("alice ssh-rsa AAAA", "not supported"),
                     (f"x bogus=1 {a}", "unknown option"), ("alice", "expected")):
        with pytest.raises(SignatureError, match=why):
            parse_allowed_signers(f"# ok\n{bad}")
    with pytest.raises(SignatureError, match="line 2"):
        parse_allowed_signers(f"# ok\nx cert-authority {a}")
    path = tmp_path / "allowed"
    path.write_text(text)
    assert read_gate_signers(path).configured and read_gate_signers(None).configured is False
    with pytest.raises(SignatureError, match=f"GATE_SIGNERS {tmp_path}/nope"):
        read_gate_signers(tmp_path / "nope")


def test_principals_are_namespaced():
    assert principal_allowed("key:alice", ["key:alice"])
    assert not principal_allowed("github:alice", ["key:alice"])
    assert not principal_allowed("alice", ["key:alice"])
    assert principal_allowed("github:alice", ["alice"]) and principal_allowed("key:alice",
                                                                              ["alice"])
    assert principal_allowed("anyone", [])


class Case:
    """One decision on gate GATE_1, opening 2, of run r1 of wf-1, signed by ``key``."""

    def __init__(self) -> None:
        self.alice, self.mallory = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        self.signers = GateSigners(configured=True, source="allowed_signers",
                                   signers=parse_allowed_signers(f"alice {pub(self.alice)}"))

    def signed(self, key: Ed25519PrivateKey, **fields) -> dict:
        bound = {"workflow_id": "wf-1", "run_id": "r1", "gate": "GATE_1", "opening": 2,
                 "verdict": "approve", "actor": "key:alice", "comment": "ok",
                 "content": None, "signed_at": NOW, **fields}
        sig = DecisionSignature(workflow_id=bound["workflow_id"], run_id=bound["run_id"],
                                opening=bound["opening"], signed_at=NOW,
                                sshsig=sign(key, decision_message(**bound)))
        return {k: v for k, v in bound.items() if k not in ("signed_at",)} | {"signature": sig}

    def problem(self, decision: dict, **at) -> str | None:
        here = {"workflow_id": "wf-1", "run_id": "r1", "gate": "GATE_1", "opening": 2, **at}
        fields = {**decision, **here}
        return signature_problem(signers=self.signers, now=NOW, **fields)


def test_signature_problem_refuses_each_attack():
    c = Case()
    good = c.signed(c.alice)
    assert c.problem(good) is None
    assert "requires a signed decision" in c.problem({**good, "signature": None})
    assert "not allowed to sign as key:alice" in c.problem(c.signed(c.mallory))
    assert "replayed" in c.problem(good, run_id="r2")
    assert "replayed" in c.problem(good, workflow_id="wf-2")
    assert "replayed" in c.problem(good, opening=3)
    # a signature for another gate verifies over a different message
    assert "does not match" in c.problem(c.signed(c.alice, gate="GATE_2"))
    for altered in ({"verdict": "reject"}, {"comment": "ok!"}, {"content": "x"},
                    {"actor": "key:al"}):
        assert "does not match" in c.problem({**good, **altered}), altered
    forged = good["signature"].model_copy(update={"opening": 3})
    assert "does not match" in c.problem({**good, "signature": forged}, opening=3)
    assert "actor is key:" in c.problem({**good, "actor": "alice"})


def test_a_signature_may_name_the_run_the_gate_opened_in_or_the_current_one():
    """A gate carried over continue-as-new: opened in r1, now in r2."""
    c = Case()
    for_opening_run, for_current_run = c.signed(c.alice), c.signed(c.alice, run_id="r2")
    assert c.problem(for_opening_run, run_id="r2", opened_run_id="r1") is None
    assert c.problem(for_current_run, run_id="r2", opened_run_id="r1") is None
    assert "replayed" in c.problem(for_opening_run, run_id="r2", opened_run_id="r0")
    assert "replayed" in c.problem(for_opening_run, run_id="r2", opened_run_id="r1",
                                   opening=3)
    assert "replayed" in c.problem(for_opening_run, workflow_id="wf-2", run_id="r2",
                                   opened_run_id="r1")
    # the signed run is part of the signed text: naming another run breaks it
    moved = for_opening_run["signature"].model_copy(update={"run_id": "r2"})
    assert "does not match" in c.problem({**for_opening_run, "signature": moved},
                                         run_id="r2", opened_run_id="r1")
