"""C2PA Content Credentials: local key chain, signing with a training-mining assertion, honest verification."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfumato.cli import main as cli_main
from sfumato.optout.c2pa_sign import sign_file, verify_file
from sfumato.optout.keys import KeyPaths, init_keys, load_keys
from sfumato.optout.rights_options import RightsOptions
from sfumato.optout.xmp_containers import jpeg_segments, png_chunk, png_chunks

DM_URI = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"
KINDS = ("ai_generative_training", "ai_training", "ai_inference", "data_mining")


def exiv2(*args: str | Path) -> str:
    exe = shutil.which("exiv2")
    assert exe, "exiv2 is required for these tests: apt-get install -y exiv2 (see .ci/install-optout.sh)"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, check=False).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPaths:
    return init_keys(tmp_path_factory.mktemp("keys") / "k", common_name="Test Artist", email="a@example.com")


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPaths:
    return init_keys(tmp_path_factory.mktemp("keys2") / "k", common_name="Somebody Else")


def _image(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    if path.suffix == ".jpg":
        img.save(path, format="JPEG", quality=92)
    else:
        img.save(path, format="PNG")
    return path


def test_key_chain_is_c2pa_shaped(keys: KeyPaths) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    for key in (keys.leaf_key, keys.root_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    root = x509.load_pem_x509_certificate(keys.root_cert.read_bytes())
    leaf = x509.load_pem_x509_certificate(keys.leaf_cert.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is True
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert leaf.issuer == root.subject and leaf.issuer != leaf.subject  # not self-signed
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) and leaf.public_key().curve.name == "secp256r1"
    leaf.verify_directly_issued_by(root)
    assert load_keys(keys.dir) == keys
    with pytest.raises(FileExistsError, match="overwrite"):
        init_keys(keys.dir)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_sign_verify_trust_and_training_mining(tmp_path: Path, keys: KeyPaths, other_keys: KeyPaths,
                                               ext: str) -> None:
    src = _image(tmp_path / f"art.{ext}")
    src_hash = hashlib.sha256(src.read_bytes()).hexdigest()
    dst = tmp_path / "out" / f"art.{ext}"
    sign_file(src, dst, keys_dir=keys.dir, rights=RightsOptions(), creator="Test Artist")
    assert hashlib.sha256(src.read_bytes()).hexdigest() == src_hash, "source must stay untouched"
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name], "no temp files may be left behind"

    plain = verify_file(dst)
    print(f"{ext} no anchor: state={plain.state} trusted={plain.trusted} c2pa={plain.c2pa_validation_state}")
    assert plain.state == "valid" and plain.trusted is False and plain.errors == []
    assert any("not trusted" in n for n in plain.notes)

    anchored = verify_file(dst, trust_anchors=keys.root_cert)
    print(f"{ext} own CA anchor: state={anchored.state} trusted={anchored.trusted} "
          f"c2pa={anchored.c2pa_validation_state}")
    assert anchored.state == "valid" and anchored.trusted is True
    assert anchored.signer == "Test Artist"
    for prefix in ("c2pa", "cawg"):
        for kind in KINDS:
            assert anchored.training_mining[f"{prefix}.{kind}"] == "notAllowed"
    assert anchored.actions[-1] == "c2pa.edited"
    assert anchored.xmp_data_mining == "DMI-PROHIBITED-AIMLTRAINING"

    foreign = verify_file(dst, trust_anchors=other_keys.root_cert)
    print(f"{ext} other CA anchor: state={foreign.state} trusted={foreign.trusted}")
    assert foreign.state == "untrusted" and foreign.trusted is False
    assert any("signingCredential.untrusted" in e for e in foreign.errors)

    # the rights XMP written before signing is still there and readable by exiv2
    line = exiv2("-K", "Xmp.plus.DataMining", "-px", dst).strip()
    print(f"exiv2 signed {ext}: {line}")
    assert line.endswith(DM_URI)
    assert "Test Artist" in exiv2("-K", "Xmp.dc.creator", "-px", dst)
    with Image.open(src) as a, Image.open(dst) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def _flip_jpeg_scan_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    _, sos = jpeg_segments(bytes(data))
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    i = start + (len(data) - start) // 2
    while data[i] == 0xFF or data[i - 1] == 0xFF or data[i] ^ 0x01 == 0xFF:
        i += 1
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_png_idat_byte(path: Path) -> None:
    data = path.read_bytes()
    out = []
    for ctype, payload, raw in png_chunks(data):
        if ctype == b"IDAT":
            p = bytearray(payload)
            p[len(p) // 2] ^= 0x01
            raw = png_chunk(ctype, bytes(p))  # valid CRC: only the pixels changed
            assert int.from_bytes(raw[-4:], "big") == zlib.crc32(ctype + bytes(p))
        out.append(raw)
    path.write_bytes(data[:8] + b"".join(out))


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_pixel_tampering_is_detected(tmp_path: Path, keys: KeyPaths, ext: str) -> None:
    signed = tmp_path / f"signed.{ext}"
    sign_file(_image(tmp_path / f"art.{ext}", seed=1), signed, keys_dir=keys.dir)
    assert verify_file(signed, trust_anchors=keys.root_cert).state == "valid"
    (_flip_jpeg_scan_byte if ext == "jpg" else _flip_png_idat_byte)(signed)
    res = verify_file(signed, trust_anchors=keys.root_cert)
    print(f"{ext} tampered: state={res.state} trusted={res.trusted} errors={res.errors}")
    assert res.state == "invalid" and res.trusted is False
    assert any("dataHash.mismatch" in e for e in res.errors)


def test_unsigned_file_and_created_action(tmp_path: Path, keys: KeyPaths) -> None:
    src = _image(tmp_path / "art.jpg", seed=2)
    none = verify_file(src)
    assert none.state == "none" and none.trusted is False and none.training_mining == {}
    dst = tmp_path / "created.jpg"
    sign_file(src, dst, keys_dir=keys.dir, action="c2pa.created", digital_source_type="digitalCreation")
    res = verify_file(dst, trust_anchors=keys.root_cert)
    assert res.state == "valid" and res.trusted and res.actions == ["c2pa.created"]
    with pytest.raises(ValueError, match="c2pa.edited"):
        sign_file(src, tmp_path / "x.jpg", keys_dir=keys.dir, action="c2pa.deleted")
    with pytest.raises(FileNotFoundError, match="keys init"):
        sign_file(src, tmp_path / "y.jpg", keys_dir=tmp_path / "no-keys")
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "y.jpg").exists()


def test_cli_keys_sign_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no user rights.toml / keys leak in
    kdir = tmp_path / "keys"
    assert cli_main(["keys", "init", "--dir", str(kdir), "--name", "CLI Artist"]) == 0
    src = _image(tmp_path / "a.png", seed=4)
    assert cli_main(["sign", str(src), "--out", str(tmp_path / "out"), "--keys", str(kdir),
                     "--creator", "CLI Artist"]) == 0
    signed = tmp_path / "out" / "a.png"
    capsys.readouterr()
    assert cli_main(["verify", str(signed), "--trust-anchor", str(kdir / "root-ca.pem"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "valid" and report["trusted"] is True
    assert report["training_mining"]["cawg.ai_generative_training"] == "notAllowed"
    assert cli_main(["verify", str(src)]) == 3
    assert cli_main(["sign", str(src), "--out", str(tmp_path / "out"), "--keys", str(kdir)]) == 2  # exists
    assert cli_main(["sign", str(src), "--in-place-copy", "--xmp-only"]) == 0
    assert exiv2("-K", "Xmp.plus.DataMining", "-px", tmp_path / "a.signed.png").strip().endswith(DM_URI)


def test_resigning_a_signed_file_keeps_the_parent_manifest_valid(tmp_path: Path, keys: KeyPaths) -> None:
    first = tmp_path / "first.jpg"
    sign_file(_image(tmp_path / "art.jpg", seed=5), first, keys_dir=keys.dir, creator="Old Name")
    second = tmp_path / "second.jpg"
    sign_file(first, second, keys_dir=keys.dir, creator="New Name")  # XMP changes before signing
    res = verify_file(second, trust_anchors=keys.root_cert)
    assert res.state == "valid" and res.trusted and res.errors == []
    assert res.notes == [], "the parent ingredient is the untouched signed input, its manifest must validate"
    assert "New Name" in exiv2("-K", "Xmp.dc.creator", "-px", second)
    assert verify_file(first, trust_anchors=keys.root_cert).state == "valid"
