"""Independent judges on the real int8 MobileNetV2 and the shared corpus (numpy in/out, no gradients)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sfumato.judges import ConceptJudge, StyleJudge, default_concepts, evaluate_split, load_mobilenet
from sfumato.judges.mobilenet import EMBED_DIM, N_OUTPUTS, list_images
from sfumato.judges.style import _fit


@pytest.fixture(scope="module")
def mnet(models_dir):
    return load_mobilenet(models_dir=models_dir)


@pytest.fixture(scope="module")
def concept_judge(models_dir, mnet):
    return ConceptJudge(models_dir=models_dir, model=mnet)


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


# ---- MobileNetV2 --------------------------------------------------------------------------------------


def test_embedding_shape_determinism_and_input_forms(mnet, corpus_dir):
    photo = list_images(corpus_dir / "photos" / "vase")[2]
    noise = _noise(150, 260, 0)  # non-square, any size
    e = mnet.embed([photo, noise])
    assert e.shape == (2, EMBED_DIM) and e.dtype == np.float32
    assert np.isfinite(e).all() and (e >= 0).all()  # average of ReLU6 activations
    assert np.array_equal(mnet.embed([photo, noise]), e)  # deterministic
    assert not np.allclose(e[0], e[1])
    # uint8 == float/255; NHWC batch == NCHW batch == list; a torch tensor with grad is just measured
    u8 = (noise * 255).round().astype(np.uint8)
    assert np.array_equal(mnet.embed(u8), mnet.embed(u8.astype(np.float32) / 255))
    batch = np.stack([noise, _noise(150, 260, 1)])
    nchw = batch.transpose(0, 3, 1, 2).copy()
    assert np.array_equal(mnet.embed(batch), mnet.embed(nchw))
    import torch

    t = torch.from_numpy(nchw).requires_grad_(True)
    out = mnet.embed(t)
    assert isinstance(out, np.ndarray) and np.array_equal(out, mnet.embed(batch))


def test_embedding_is_the_classifier_input(mnet, corpus_dir):
    """The 1280-d tensor we read really is what the final 1x1 conv turns into the logits."""
    probs, emb = mnet.forward(list_images(corpus_dir / "photos" / "dog")[:2])
    run = mnet._run
    _, w_idx, b_idx = run.head_inputs
    details = {d["index"]: d for d in run.it.get_tensor_details()}
    s, z = details[w_idx]["quantization"]
    W = (run.it.get_tensor(w_idx).reshape(N_OUTPUTS, EMBED_DIM).astype(np.float64) - z) * s
    b = run.it.get_tensor(b_idx).astype(np.float64) * details[b_idx]["quantization"][0]
    for p, e in zip(probs, emb, strict=True):
        logits = W @ e + b
        top = np.argsort(-p)[:5]
        # log-probability differences equal logit differences up to int8 rounding
        d_model = np.log(p[top]) - np.log(p[top[0]])
        d_ours = logits[top] - logits[top[0]]
        assert np.abs(d_model - d_ours).max() < 0.15


def test_predict_probabilities(mnet, corpus_dir):
    vases = list_images(corpus_dir / "photos" / "vase")
    p = mnet.predict([vases[2], _noise(64, 64, 3)])
    assert p.shape == (2, N_OUTPUTS) and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert mnet.labels[int(p[0].argmax())] == "vase"
    assert mnet.top_k(vases[2], k=1)[0][0][0] == "vase"


def test_input_validation(mnet):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mnet.predict(_noise(32, 32, 0) * 255)
    with pytest.raises(ValueError, match="RGB"):
        mnet.predict(np.zeros((32, 32), np.float32)[None])
    with pytest.raises(ValueError, match="variant"):
        load_mobilenet(variant="nope")


# ---- concepts -------------------------------------------------------------------------------------------


def test_concepts_json_indices_and_labels(mnet):
    concepts = default_concepts()
    labels = mnet.labels
    seen: set[int] = set()
    for name, entry in concepts.items():
        cls = entry["classes"]
        assert entry["description"] and cls, name
        assert all(isinstance(i, int) and 1 <= i <= 1000 for i in cls), name
        assert not seen & set(cls), f"{name} overlaps another concept"
        seen |= set(cls)
    for c in ("dog", "cat", "teapot", "car", "vase", "bird", "horse", "fish", "flower", "building", "boat",
              "airplane", "food", "fruit"):
        assert c in concepts
    dog = concepts["dog"]["classes"]
    assert dog == list(range(152, 270))  # ImageNet-1k 151..268, shifted by the background output
    assert labels[dog[0]].startswith("Chihuahua") and labels[dog[-1]] == "Mexican hairless"
    assert labels[151] == "sea lion" and labels[270].startswith("timber wolf")  # just outside
    dog_names = {labels[i].split(",")[0] for i in dog}
    assert {"Pembroke", "Border collie", "golden retriever", "beagle", "pug"} <= dog_names
    assert [labels[i].split(",")[0] for i in concepts["cat"]["classes"]] == [
        "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    assert "teapot" in [labels[i] for i in concepts["teapot"]["classes"]]
    assert [labels[i] for i in concepts["vase"]["classes"]] == ["vase"]
    car_names = {labels[i].split(",")[0] for i in concepts["car"]["classes"]}
    assert {"sports car", "racer", "convertible", "go-kart", "Model T", "jeep"} <= car_names
    with pytest.raises(ValueError, match="background"):
        ConceptJudge(concepts={"x": [0]}, model=mnet)


def test_concept_judge_on_shared_dog_and_cat_photos(concept_judge, corpus_dir):
    dogs = list_images(corpus_dir / "photos" / "dog")
    cats = list_images(corpus_dir / "photos" / "cat")
    assert len(dogs) == 12 and len(cats) == 8
    probs = concept_judge.probabilities(dogs + cats)
    nd = len(dogs)
    assert concept_judge.top_k_hits(None, "dog", k=5, probs=probs[:nd]).all()
    assert concept_judge.top_k_hits(None, "cat", k=5, probs=probs[nd:]).all()
    assert not concept_judge.top_k_hits(None, "dog", k=1, probs=probs[nd:]).any()
    assert concept_judge.classify(None, probs=probs) == ["dog"] * nd + ["cat"] * len(cats)
    s = concept_judge.scores(None, probs=probs)
    assert s.shape == (len(probs), len(concept_judge.concepts)) and (s.sum(axis=1) <= 1 + 1e-5).all()
    np.testing.assert_allclose(concept_judge.score(None, "dog", probs=probs),
                               s[:, concept_judge.concepts.index("dog")])
    assert np.median(s[:nd, concept_judge.concepts.index("dog")]) > 0.9
    # the public path through the model agrees with the precomputed one
    assert concept_judge.classify(dogs[:1]) == ["dog"]


# ---- style judge ----------------------------------------------------------------------------------------

ARTISTS = ("canaletto", "claude_monet", "paul_cezanne")


@pytest.fixture(scope="module")
def small_split(corpus_dir):
    train, test = {}, {}
    for a in ARTISTS:
        files = list_images(corpus_dir / "art" / a)[:12]
        train[a], test[a] = files[:8], files[8:]
    return train, test


@pytest.fixture(scope="module")
def small_judge(small_split, models_dir):
    return StyleJudge.train(small_split[0], models_dir=models_dir, C=1.0, seed=0)


def test_style_judge_beats_chance_on_held_out(small_judge, small_split):
    assert small_judge.artists == sorted(ARTISTS)
    test = small_split[1]
    images = [p for a in ARTISTS for p in test[a]]
    truth = [a for a in ARTISTS for _ in test[a]]
    proba = small_judge.predict_proba(images)
    assert proba.shape == (len(images), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    acc = np.mean([p == t for p, t in zip(small_judge.predict(images), truth, strict=True)])
    assert acc >= 0.75, acc  # chance is 1/3


def test_style_judge_save_load_round_trip(small_judge, small_split, tmp_path, models_dir):
    path = small_judge.save(tmp_path / "judge.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "sfumato.style_judge/1" and doc["embedding"]["variant"] == "quant"
    loaded = StyleJudge.load(path, models_dir=models_dir)
    assert loaded.artists == small_judge.artists and loaded.tiles == small_judge.tiles
    assert np.array_equal(loaded.coef, small_judge.coef) and np.array_equal(loaded.mean, small_judge.mean)
    imgs = [small_split[1]["canaletto"][0], _noise(200, 120, 5)]
    assert np.array_equal(loaded.predict_proba(imgs), small_judge.predict_proba(imgs))
    doc["embedding"]["weights_sha256"] = "0" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="retrain"):
        StyleJudge.load(bad)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_numpy_inference_matches_sklearn(n_classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(3, 16)) + (i % n_classes) for i in range(12)]
    labels = [f"a{i % n_classes}" for i in range(12)]
    params = _fit(feats, labels, C=0.5, seed=0)
    judge = StyleJudge(**params)
    X = np.concatenate(feats)
    y = np.repeat(labels, 3)
    ref = LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000, random_state=0)
    ref.fit((X - params["mean"]) / params["scale"], y)
    expect = np.stack([ref.predict_proba((f - params["mean"]) / params["scale"]).mean(axis=0) for f in feats])
    np.testing.assert_allclose(judge._proba_from_features(feats), expect, atol=1e-10)


def test_logistic_fit_matches_sklearn_without_importing_it():
    """The judges' fit (sfumato.judges.logistic) is scikit-learn's LogisticRegression(class_weight="balanced")
    objective and solver, without importing scikit-learn (about a second of a first run)."""
    import subprocess
    import sys

    from sklearn.linear_model import LogisticRegression

    from sfumato.judges.logistic import fit_balanced_logistic

    rng = np.random.default_rng(3)
    for k, counts in ((2, (30, 12)), (5, (40, 9, 20, 25, 6))):
        y = np.repeat(np.arange(k), counts)
        X = rng.normal(size=(len(y), 24)) + 0.8 * y[:, None] * rng.normal(size=24)
        labels = np.array([f"c{i}" for i in y])
        ours = fit_balanced_logistic(X, labels, C=0.7)
        ref = LogisticRegression(C=0.7, class_weight="balanced", max_iter=5000).fit(X, labels)
        assert ours["classes"] == list(ref.classes_) and ours["converged"]
        assert ours["coef"].shape == ref.coef_.shape and ours["intercept"].shape == ref.intercept_.shape
        zero, one = np.zeros(24), np.ones(24)
        p = StyleJudge(artists=ours["classes"], mean=zero, scale=one, coef=ours["coef"],
                       intercept=ours["intercept"])._proba_from_features([X])
        np.testing.assert_allclose(p[0], ref.predict_proba(X).mean(axis=0), atol=1e-8)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_balanced_logistic(X, ["a"] * len(X), C=1.0)
    code = ("import sys, numpy as np; from sfumato.judges.style import fit_logistic; "
            "r = np.random.default_rng(0); fit_logistic([r.normal(size=(4, 8)) + i for i in range(6)], "
            "['a', 'b', 'c'] * 2, C=1.0, seed=0); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_quantize_input_in_place_equals_the_expression():
    from types import SimpleNamespace

    from sfumato.judges.mobilenet import _Runner

    x = np.random.default_rng(5).random((224, 224, 3), dtype=np.float32)
    for scale, zero in ((0.0078125, 128), (0.007874015718698502, 127)):
        fake = SimpleNamespace(input_quant=(scale, zero), input_dtype=np.uint8)
        expect = np.clip(np.round((x * 2.0 - 1.0) / scale + zero), 0, 255).astype(np.uint8)
        assert np.array_equal(_Runner.quantize_input(fake, x), expect)
    fake = SimpleNamespace(input_quant=(0.0, 0), input_dtype=np.float32)
    assert np.array_equal(_Runner.quantize_input(fake, x), x * 2.0 - 1.0)


def test_embed_views_with_read_ahead_equals_one_at_a_time(mnet, corpus_dir):
    from sfumato.judges.mobilenet import load_image_file
    from sfumato.judges.style import embed_views, image_views

    paths = list_images(corpus_dir / "art128" / "claude_monet")[:6]
    expect = [mnet.embed(image_views(load_image_file(p), tiles=False), fit="squash").astype(np.float64)
              for p in paths]
    got = embed_views(mnet, paths, tiles=False)
    assert len(got) == 6 and all(np.array_equal(a, b) for a, b in zip(got, expect, strict=True))


def test_prefetched_keeps_order_bounds_its_lead_and_raises_at_the_item():
    import threading

    from sfumato.judges.style import prefetched

    started: list[int] = []
    lock = threading.Lock()

    def f(i: int) -> int:
        with lock:
            started.append(i)
        if i == 7:
            raise OSError("unreadable file 7")
        return i * i

    gen = prefetched(f, range(10), depth=3)
    assert [next(gen) for _ in range(2)] == [0, 1]
    assert max(started) <= 1 + 3  # never more than `depth` items ahead of the consumer
    with pytest.raises(OSError, match="file 7"):
        list(gen)
    assert list(prefetched(f, range(5))) == [0, 1, 4, 9, 16] and list(prefetched(f, [])) == []


def test_evaluate_split_report(small_split, models_dir):
    ref = {a: small_split[0][a][:6] for a in ARTISTS}
    rep = evaluate_split(ref, test_size=0.5, seed=0, tiles=False, models_dir=models_dir)
    conf = np.array(rep.confusion)
    assert conf.shape == (3, 3) and conf.sum() == rep.n_test == 9 and rep.n_train == 9
    assert rep.accuracy == pytest.approx(np.trace(conf) / 9)
    assert len(rep.misclassified) == 9 - np.trace(conf)
    assert "confusion matrix" in rep.format()


def test_style_judge_input_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("SFUMATO_CORPUS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="SFUMATO_CORPUS_DIR"):
        StyleJudge.default()
    with pytest.raises(FileNotFoundError, match="art"):
        StyleJudge.default(corpus_dir=tmp_path)
    with pytest.raises(ValueError, match="at least 2 artists"):
        StyleJudge.train({"solo": [_noise(32, 32, 0)]})
