"""De-confounded judges (issue 22): fixed hash splits, the art128 whole-image and Gram judges, the
crop-level ace judge, held-out reports and the flip-rate efficacy figure."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from sfumato.judges.crop import CropStyleJudge, crop_grid, trainer_view
from sfumato.judges.efficacy import flip_rate
from sfumato.judges.gram import GramStyleJudge, rademacher_projection
from sfumato.judges.heldout import heldout_report, top1_disagreement
from sfumato.judges.reference import art128_view, evaluate_holdout, train_art128_judge
from sfumato.judges.splits import ace_split, art128_split, hash_split, split_rank

# ---------------------------------------------------------------------------------------------- fast tier


def test_flip_rate_counts_recognised_then_flipped():
    clean = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    prot = np.array([[0.4, 0.6], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    r = flip_rate(clean, prot, [0, 0, 0, 1])
    # recognised clean: images 0, 1 (true 0) and 3 (true 1); flipped: 0 and 3
    assert (r.n_images, r.recognised_clean, r.flipped, r.recognised_protected) == (4, 3, 2, 1)
    assert r.flip_rate == pytest.approx(2 / 3)
    assert r.mean_p_true_drop == pytest.approx(np.mean([0.4, -0.1, 0.1, 0.5]))
    assert r.mean_p_true_clean == pytest.approx(np.mean([0.8, 0.6, 0.3, 0.9]))
    named = flip_rate(clean, prot, ["a", "a", "a", "b"], artists=["a", "b"])
    assert named == r
    assert set(r.to_dict()) >= {"flip_rate", "mean_p_true_drop"}


def test_flip_rate_edge_cases():
    none = flip_rate(np.array([[0.1, 0.9]]), np.array([[0.9, 0.1]]), [0])
    assert math.isnan(none.flip_rate) and none.mean_p_true_drop == pytest.approx(-0.8)
    with pytest.raises(ValueError):
        flip_rate(np.ones((2, 3)), np.ones((3, 3)), [0, 1])
    with pytest.raises(ValueError):
        flip_rate(np.ones((1, 2)), np.ones((1, 2)), ["a"])  # names without artists
    with pytest.raises(KeyError):
        flip_rate(np.ones((1, 2)), np.ones((1, 2)), ["z"], artists=["a", "b"])
    with pytest.raises(ValueError):
        flip_rate(np.ones((1, 2)), np.ones((1, 2)), [2])


def _fake_corpus(root: Path, sub: str, counts: dict[str, int], prefix: str = "") -> None:
    for artist, n in counts.items():
        d = root / sub / artist
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"{prefix}{artist}_{i}.jpg").write_bytes(b"x")
        (d / "notes.txt").write_text("not an image")


def test_hash_split_deterministic_disjoint_and_order_free(tmp_path):
    counts = {"a": 12, "b": 9, "c": 20}
    _fake_corpus(tmp_path, "art128", counts)
    tr, ho = art128_split(tmp_path, holdout_per_artist=4)
    assert (tr, ho) == art128_split(tmp_path / "art128", holdout_per_artist=4)
    assert sorted(tr) == sorted(ho) == sorted(counts)
    for a, n in counts.items():
        assert len(ho[a]) == 4 and len(tr[a]) == n - 4
        assert not set(tr[a]) & set(ho[a])
        # the hold-out is the 4 smallest hashes of the *name*, whatever the listing order or folder
        names = sorted((f"{a}_{i}.jpg" for i in range(n)), key=split_rank)[:4]
        assert sorted(p.name for p in ho[a]) == sorted(names)
    shuffled = {a: list(reversed(tr[a] + ho[a])) for a in counts}
    assert hash_split(shuffled, holdout_per_artist=4) == (tr, ho)
    with pytest.raises(ValueError):
        art128_split(tmp_path, holdout_per_artist=9)  # b has 9 files: none left to train
    with pytest.raises(FileNotFoundError):
        art128_split(tmp_path / "missing")


def test_ace_split_uses_only_ace_files(tmp_path):
    _fake_corpus(tmp_path, "art", {"x": 5, "y": 6}, prefix="ace_")
    (tmp_path / "art" / "x" / "cyclegan_1.jpg").write_bytes(b"x")
    tr, ho = ace_split(tmp_path, holdout_per_artist=2)
    assert all(p.name.startswith("ace_") for v in (*tr.values(), *ho.values()) for p in v)
    assert [len(tr["x"]), len(ho["x"]), len(tr["y"])] == [3, 2, 4]


def test_split_rank_is_pinned():
    # A changed hash or salt silently changes every held-out figure: pin it.
    assert split_rank("claude_monet_7.jpg") == hashlib.sha256(b"sfumato.judge-split/1:claude_monet_7.jpg").hexdigest()


def test_rademacher_projection_is_pinned():
    p = rademacher_projection(10, 8, 7)
    assert p.dtype == np.float32 and p.shape == (10, 8)
    assert np.allclose(np.abs(p), 1 / np.sqrt(8))
    assert hashlib.sha256(p.tobytes()).hexdigest() == \
        "ab1bd8526098f10b4e085e41f16e03b72b762b05374620f277f9201f689eb896"


def test_heldout_report_and_disagreement():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    r = heldout_report("j", ["a", "b"], proba, ["a", "b", "b"], ["i0", "i1", "i2"])
    assert r.per_artist == {"a": (1, 1), "b": (1, 2)}
    assert r.accuracy == pytest.approx(2 / 3) and r.balanced_accuracy == pytest.approx(0.75)
    assert r.misclassified == [("i2", "b", "a")] and r.chance == 0.5
    assert "a" in r.table() and r.to_dict()["per_artist"]["b"]["accuracy"] == 0.5
    assert top1_disagreement(proba, proba[:, ::-1]) == 1.0
    assert top1_disagreement(proba, proba) == 0.0


def test_trainer_views_and_crop_grid():
    img = np.random.default_rng(0).random((300, 600, 3), dtype=np.float32)
    v = trainer_view(img, 512)
    assert v.shape == (256, 512, 3)
    crops = crop_grid(v, 3)
    assert len(crops) == 9 and all(c.shape == (224, 224, 3) for c in crops)
    np.testing.assert_array_equal(crops[0], v[:224, :224])
    np.testing.assert_array_equal(crops[-1], v[-224:, -224:])
    small = crop_grid(np.zeros((100, 150, 3), np.float32), 3)
    assert all(c.shape == (224, 224, 3) for c in small)
    assert art128_view([img])[0].shape == (128, 128, 3)


# ---------------------------------------------------------------------------------------------- real data


def test_art128_split_on_the_shared_corpus(corpus_dir):
    tr, ho = art128_split(corpus_dir)
    assert len(tr) == len(ho) == 14
    assert all(len(v) == 8 for v in ho.values())
    total = sum(len(v) for v in tr.values()) + sum(len(v) for v in ho.values())
    assert total == len(list((corpus_dir / "art128").glob("*/*.jpg"))) == 639
    for a in tr:
        assert not set(tr[a]) & set(ho[a])
    # pinned: the same hold-out on every machine
    assert [p.name for p in ho["claude_monet"]] == [
        "claude_monet_18.jpg", "claude_monet_19.jpg", "claude_monet_27.jpg", "claude_monet_33.jpg",
        "claude_monet_39.jpg", "claude_monet_52.jpg", "claude_monet_64.jpg", "claude_monet_7.jpg"]
    atr, aho = ace_split(corpus_dir)
    assert sorted(aho) == ["canaletto", "claude_monet", "henri_matisse", "paul_signac", "vincent_van_gogh"]
    assert [p.name for p in aho["canaletto"]] == [
        "ace_Rococo_canaletto_1.png", "ace_Rococo_canaletto_17.png", "ace_Rococo_canaletto_5.png"]


def test_art128_whole_image_judge_well_above_chance(corpus_dir, models_dir, tmp_path):
    judge = train_art128_judge(corpus_dir, models_dir=models_dir, cache_dir=tmp_path)
    assert len(judge.artists) == 14 and not judge.tiles
    _, ho = art128_split(corpus_dir)
    rep, proba = evaluate_holdout(judge, ho, name="art128")
    assert proba.shape == (112, 14)
    # measured 0.580 (benchmarks/judges.py); chance is 1/14 = 0.071; assert >= 3x chance with margin
    assert rep.accuracy >= 0.30, rep.table()
    cached = train_art128_judge(corpus_dir, models_dir=models_dir, cache_dir=tmp_path)  # loads the JSON
    assert len(list(tmp_path.glob("art128-style-*.json"))) == 1
    some = ho["titian"][:2]
    np.testing.assert_allclose(cached.predict_proba(some), proba[-16:-14], atol=1e-12)


def test_art128_judge_fit_is_scikit_learns(corpus_dir, models_dir):
    """The judges' own L-BFGS fit (sfumato.judges.logistic) lands where scikit-learn's LogisticRegression did
    on the real art128 embeddings: the judges' recorded figures were measured with the latter."""
    from sklearn.linear_model import LogisticRegression

    from sfumato.judges.logistic import fit_balanced_logistic
    from sfumato.judges.mobilenet import load_mobilenet
    from sfumato.judges.style import embed_views, linear_proba

    tr, ho = art128_split(corpus_dir)
    model = load_mobilenet(models_dir=models_dir)
    X = np.concatenate([f for a in tr for f in embed_views(model, tr[a], tiles=False)])
    y = np.array([a for a in tr for _ in tr[a]])
    Xh = np.concatenate([f for a in ho for f in embed_views(model, ho[a], tiles=False)])
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale < 1e-8] = 1.0
    Z, Zh = (X - mean) / scale, (Xh - mean) / scale
    ours = fit_balanced_logistic(Z, y, C=1.0)
    ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, random_state=0).fit(Z, y)
    assert ours["converged"] and ours["classes"] == list(ref.classes_)
    zero, one = np.zeros(Z.shape[1]), np.ones(Z.shape[1])
    p = linear_proba(Zh, mean=zero, scale=one, coef=ours["coef"], intercept=ours["intercept"])
    # measured: 4e-13 apart on the 112 hold-out paintings (scipy's L-BFGS-B, the same objective and settings)
    np.testing.assert_allclose(p, ref.predict_proba(Zh), atol=1e-6)
    assert np.array_equal(p.argmax(axis=1), ref.predict_proba(Zh).argmax(axis=1))


@pytest.fixture(scope="module")
def gram_subset(corpus_dir, models_dir):
    tr, ho = art128_split(corpus_dir)
    artists = ["claude_monet", "gustav_klimt", "rembrandt", "vincent_van_gogh", "amedeo_modigliani"]
    train = {a: tr[a][:10] for a in artists}
    judge = GramStyleJudge.train(train, models_dir=models_dir)
    return judge, {a: ho[a][:5] for a in artists}


def test_gram_judge_better_than_chance(gram_subset):
    judge, ho = gram_subset
    rep, _ = evaluate_holdout(judge, ho, name="gram")
    assert rep.accuracy >= 0.35, rep.table()  # chance 0.2


def test_gram_judge_json_round_trip(gram_subset, tmp_path, models_dir):
    judge, ho = gram_subset
    some = [p for v in ho.values() for p in v[:1]]
    path = judge.save(tmp_path / "gram.json")
    assert b"pickle" not in path.read_bytes()[:200]
    loaded = GramStyleJudge.load(path, models_dir=models_dir)
    np.testing.assert_allclose(loaded.predict_proba(some), judge.predict_proba(some), atol=1e-12)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "x"}')
    with pytest.raises(ValueError):
        GramStyleJudge.load(bad)


def test_crop_judge_small_subset(corpus_dir, models_dir, tmp_path):
    tr, ho = ace_split(corpus_dir)
    train = {"canaletto": tr["canaletto"][:2], "henri_matisse": tr["henri_matisse"][:2]}
    judge = CropStyleJudge.train(train, models_dir=models_dir, view_sides=(512,), grid=2)
    assert judge.training["n_crops"] == 4 * 4
    test = [ho["canaletto"][0], ho["henri_matisse"][0]]
    p = judge.predict_proba(test, view_side=512)
    assert p.shape == (2, 2) and np.allclose(p.sum(axis=1), 1)
    views = judge.predict_proba_views(test)
    np.testing.assert_allclose(views[512], p)
    assert judge.predict_proba_crops(np.zeros((256, 300, 3), np.float32)).shape == (1, 2)
    loaded = CropStyleJudge.load(judge.save(tmp_path / "crop.json"), models_dir=models_dir)
    np.testing.assert_allclose(loaded.predict_proba(test, view_side=512), p, atol=1e-12)
