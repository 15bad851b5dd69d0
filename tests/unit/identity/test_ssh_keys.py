import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from remotegpu.domain.identity.ssh_keys import parse_public_key
from remotegpu.domain.shared.errors import InvalidInput


def openssh(private_key) -> str:
    return private_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.mark.parametrize(
    "make, key_type",
    [
        (lambda: ed25519.Ed25519PrivateKey.generate(), "ssh-ed25519"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp384"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "ecdsa-sha2-nistp521"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "ssh-rsa"),
    ],
)
def test_accepts_supported_key_types_and_keeps_the_comment(make, key_type):
    text = openssh(make()) + " alice@laptop"
    parsed = parse_public_key(text)
    assert parsed.key_type == key_type
    assert parsed.comment == "alice@laptop"
    assert parsed.fingerprint.startswith("SHA256:")
    assert parsed.normalized == " ".join(text.split()[:2])


def test_fingerprint_matches_ssh_keygen(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    text = openssh(ed25519.Ed25519PrivateKey.generate())
    (tmp_path / "k.pub").write_text(text + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == parse_public_key(text).fingerprint


def test_rsa_keys_below_2048_bits_are_refused():
    weak = openssh(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(InvalidInput, match="2048"):
        parse_public_key(weak)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "ssh-ed25519 not-base64!!!",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",  # truncated key
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",  # unsupported type
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",  # type mismatch
    ],
)
def test_garbage_is_invalid_input(garbage):
    with pytest.raises(InvalidInput):
        parse_public_key(garbage)


def test_trailing_bytes_are_refused():
    import base64

    text = openssh(ed25519.Ed25519PrivateKey.generate())
    kind, data = text.split()
    padded = base64.b64encode(base64.b64decode(data) + b"\x00").decode()
    with pytest.raises(InvalidInput, match="trailing"):
        parse_public_key(f"{kind} {padded}")
