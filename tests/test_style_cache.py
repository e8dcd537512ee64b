"""The on-disk cache of built-in target styles (exemplars and Gram signatures): same values, no stale reads."""

from __future__ import annotations

import numpy as np
import pytest

from sfumato.targets import style_cache, styles


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(style_cache.ENV_STYLE_CACHE_DIR, str(tmp_path))
    styles.builtin_style.cache_clear()
    yield tmp_path
    styles.builtin_style.cache_clear()


def test_exemplars_come_back_bit_identical_from_the_cache(cache):
    first = styles.builtin_style("impasto")
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("exemplars-impasto-2-")
    styles.builtin_style.cache_clear()
    again = styles.builtin_style("impasto")
    for a, b in zip(first.exemplars, again.exemplars, strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    # a fresh rendering (no cache) gives the same pixels
    fn = styles.STYLE_FAMILIES["impasto"]
    base = sum(ord(c) for c in "impasto") * 1000
    assert np.array_equal(fn(base).astype(np.float32), again.exemplars[0])


def test_a_broken_or_unwritable_cache_falls_back_to_computing(cache, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return [np.arange(6, dtype=np.float32).reshape(2, 3)]

    import zipfile

    for bad in (b"", b"not an npz", b"PK\x03\x04truncated"):  # empty, foreign, a truncated zip
        (cache / "bad.npz").write_bytes(bad)
        assert np.array_equal(style_cache.cached_arrays("bad", compute)[0], compute()[0])
        assert zipfile.is_zipfile(cache / "bad.npz")  # recomputed and overwritten
    calls.clear()
    (cache / "k.npz").write_bytes(b"not an npz")
    out = style_cache.cached_arrays("k", compute)
    assert calls and np.array_equal(out[0], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert np.array_equal(style_cache.cached_arrays("k", compute)[0], out[0]) and len(calls) == 1
    blocked = cache / "file"
    blocked.write_text("x")
    monkeypatch.setenv(style_cache.ENV_STYLE_CACHE_DIR, str(blocked / "sub"))  # a folder under a file: cannot write
    assert np.array_equal(style_cache.cached_arrays("k", compute)[0], out[0]) and len(calls) == 2


def test_the_key_follows_the_painters_code(cache, monkeypatch):
    styles.builtin_style("glitch")
    monkeypatch.setattr(styles, "_source_bytes", lambda: b"changed painters")
    styles.builtin_style.cache_clear()
    styles.builtin_style("glitch")
    assert len([p for p in cache.iterdir() if p.name.startswith("exemplars-glitch-")]) == 2


def test_gram_signatures_of_built_in_styles_come_back_identical(cache, models_dir):  # noqa: ANN001
    import torch

    from sfumato.io.tensors import to_nchw
    from sfumato.targets import style_target
    from sfumato.targets.gatys import gram_signature

    style = styles.builtin_style("ink-hatching")
    style_target._SIG_CACHE.clear()
    first = style_target.style_signature(style, models_dir)
    assert any(p.name.startswith("gram-ink-hatching-") for p in cache.iterdir())
    style_target._SIG_CACHE.clear()
    again = style_target.style_signature(style, models_dir)  # read from disk
    fresh = gram_signature([to_nchw(e) for e in style.exemplars], models_dir=models_dir)
    for a, b, c in zip(first, again, fresh, strict=True):
        assert torch.equal(a, b) and torch.equal(b, c)
    # a user's folder style is not written to disk, even under a built-in name
    user = styles.StyleSource("ink-hatching", tuple(np.full((32, 32, 3), 0.5, np.float32) for _ in range(2)))
    n = len(list(cache.iterdir()))
    style_target.style_signature(user, models_dir)
    assert len(list(cache.iterdir())) == n
    style_target._SIG_CACHE.clear()


def test_config_prepare_fills_the_style_cache(cache, models_dir, capsys):  # noqa: ANN001
    import re

    from sfumato.commands.config import prepare_styles
    from sfumato.targets import style_target

    style_target._SIG_CACHE.clear()
    assert prepare_styles() is True
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"built-in target styles ready in \d+\.\d s \(cached in .*\)", out), out
    names = {p.name.split("-")[0] for p in cache.iterdir()}
    assert names == {"exemplars", "gram"} and len(list(cache.iterdir())) == 2 * len(styles.STYLE_FAMILIES)
    style_target._SIG_CACHE.clear()
