"""Tests for anchor images (folder / generated) and concept scorers (MobileNet, CLIP).

Generation and CLIP use tiny randomly initialised models built here (no downloads, Hub offline); the
MobileNet scorer runs the real shared int8 MobileNetV2 on the shared dog/cat photos.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from sfumato.judges.scorers import (
    CLIP_THRESHOLD,
    ClipConceptScorer,
    ConceptScorer,
    MobileNetConceptScorer,
    make_scorer,
)
from sfumato.models import ModelNotFoundError
from sfumato.targets.anchors import AnchorSet, generate_anchors, load_anchor_folder

WORDS = ("a", "photo", "of", "dog", "cat", "teapot")


@pytest.fixture(scope="module", autouse=True)
def _one_thread_offline(tmp_path_factory: pytest.TempPathFactory):
    """Tiny models run fastest on one thread (two contend on a shared CPU); never touch the network."""
    import huggingface_hub.constants as hf_constants

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
        yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------ tiny models


def _bpe_files(folder: Path) -> None:
    """vocab.json/merges.txt of a tiny CLIP BPE: letters, letters + '</w>', and merges for WORDS."""
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    letters = "abcdefghijklmnopqrstuvwxyz"
    for tok in [*letters, *(c + "</w>" for c in letters)]:
        vocab[tok] = len(vocab)
    merges: list[str] = []
    for word in WORDS:  # merge left to right: "d o" -> "do", "do g</w>" -> "dog</w>"
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append(f"{parts[0]} {parts[1]}")
            parts = [parts[0] + parts[1], *parts[2:]]
            vocab.setdefault(parts[0], len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n",
                                       encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import CLIPTokenizer

    folder = tmp_path_factory.mktemp("bpe")
    _bpe_files(folder)
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
    ids = tok("a photo of a dog")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>",
                                              "dog</w>", "<|endoftext|>"]
    return tok


@pytest.fixture(scope="module")
def sd_pipe(tokenizer):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(4, 8), layers_per_block=1, cross_attention_dim=8, norm_num_groups=4,
            sample_size=8, in_channels=4, out_channels=4, attention_head_dim=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        )
        vae = AutoencoderKL(
            block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            sample_size=16,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                   unet=unet.eval(), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd_folder(sd_pipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_sd")
    sd_pipe.save_pretrained(folder, safe_serialization=True)
    assert (folder / "model_index.json").is_file()
    assert list(folder.rglob("*.safetensors")) and not list(folder.rglob("*.bin"))
    return folder


@pytest.fixture(scope="module")
def clip_pair(tokenizer):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = CLIPModel(CLIPConfig(
            text_config={"vocab_size": len(tokenizer), "hidden_size": 8, "intermediate_size": 16,
                         "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77,
                         "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
            vision_config={"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
            projection_dim=8,
        )).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def clip_folder(clip_pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_clip")
    model, processor = clip_pair
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return folder


def _rand_images(n: int, seed: int, shape: tuple[int, int] = (20, 28)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((*shape, 3), dtype=np.float32) for _ in range(n)]


# --------------------------------------------------------------------------------- generated anchors


def _check_images(aset: AnchorSet, n: int, size: int) -> None:
    assert len(aset) == len(aset.images) == len(aset.names) == n
    for im in aset.images:
        assert im.shape == (size, size, 3) and im.dtype == np.float32
        assert np.isfinite(im).all() and im.min() >= 0.0 and im.max() <= 1.0


def test_generate_anchors_from_pipeline_object(sd_pipe) -> None:
    a = generate_anchors(sd_pipe, concept="dog", n=3, seed=5, steps=2, size=16)
    _check_images(a, 3, 16)
    assert a.concept == "dog"
    assert a.names == ("generated-0", "generated-1", "generated-2")
    src = a.source
    assert src["kind"] == "generated" and src["pipeline_class"] == "StableDiffusionPipeline"
    assert src["prompt"] == "a photo of a dog"
    assert (src["seed"], src["seeds"], src["steps"], src["size"]) == (5, [5, 6, 7], 2, 16)
    assert src["image_size"] == [16, 16]
    assert src["guidance_scale"] == pytest.approx(7.5)  # StableDiffusionPipeline's default, recorded
    assert json.loads(json.dumps(src)) == src
    # each image has its own seed: they differ from each other and are not flat
    assert not np.array_equal(a.images[0], a.images[1])
    assert all(float(im.std()) > 1e-3 for im in a.images)

    # same seed -> identical images, independent of n; seed 6 starts where seed 5's second image was
    b = generate_anchors(sd_pipe, concept="dog", n=2, seed=5, steps=2, size=16)
    for x, y in zip(a.images[:2], b.images, strict=True):
        np.testing.assert_array_equal(x, y)
    c = generate_anchors(sd_pipe, concept="dog", n=1, seed=6, steps=2, size=16)
    np.testing.assert_array_equal(c.images[0], a.images[1])
    assert np.abs(c.images[0] - a.images[0]).max() > 1e-3
    # the prompt matters too
    d = generate_anchors(sd_pipe, concept="cat", n=1, seed=5, steps=2, size=16)
    assert d.source["prompt"] == "a photo of a cat"
    assert np.abs(d.images[0] - a.images[0]).max() > 1e-4


def test_generate_anchors_from_saved_folder(sd_pipe, sd_folder: Path) -> None:
    direct = generate_anchors(sd_pipe, concept="dog", n=2, seed=0, steps=2, size=16, guidance_scale=3.0)
    loaded = generate_anchors(str(sd_folder), concept="dog", n=2, seed=0, steps=2, size=16, guidance_scale=3.0)
    _check_images(loaded, 2, 16)
    assert loaded.source["model"] == str(sd_folder)
    assert loaded.source["pipeline_class"] == "StableDiffusionPipeline"
    assert loaded.source["guidance_scale"] == 3.0
    for x, y in zip(direct.images, loaded.images, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)
    # the default resolution is the pipeline's own (UNet sample_size 8 x VAE factor 2)
    default = generate_anchors(str(sd_folder), concept="dog", n=1, seed=0, steps=1)
    assert default.images[0].shape == (16, 16, 3) and default.source["size"] is None


def test_generate_anchors_offline_missing_model_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        generate_anchors("nobody-here/no-such-model", concept="dog", n=1, local_files_only=True)
    msg = str(err.value)
    assert "'nobody-here/no-such-model'" in msg and "\n" not in msg
    assert "local diffusers pipeline folder" in msg and "offline" in msg
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        generate_anchors(str(tmp_path / "no" / "such" / "folder"), concept="dog", n=1)


class _FakePipe:
    """Records the call; returns grey images, optionally flagged by a safety checker."""

    def __init__(self, flagged: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.flagged = flagged

    def __call__(self, prompt: str, *, generator: torch.Generator, guidance_scale: float = 5.0,
                 **kwargs: Any) -> SimpleNamespace:
        self.calls.append({"prompt": prompt, "seed": generator.initial_seed(), "guidance_scale": guidance_scale,
                           **kwargs})
        h, w = kwargs.get("height") or 8, kwargs.get("width") or 8
        return SimpleNamespace(images=np.full((1, h, w, 3), 0.5, np.float32),
                               nsfw_content_detected=[self.flagged])


def test_generate_anchors_call_contract_and_validation() -> None:
    pipe = _FakePipe()
    a = generate_anchors(pipe, concept="toy_car", n=2, seed=10, steps=7, size=24,
                         prompt_template="a drawing of a {concept}, high detail")
    assert [c["seed"] for c in pipe.calls] == [10, 11]
    call = pipe.calls[0]
    assert call["prompt"] == "a drawing of a toy car, high detail"
    assert (call["num_inference_steps"], call["output_type"], call["height"], call["width"]) == (7, "np", 24, 24)
    assert call["guidance_scale"] == 5.0 and a.source["guidance_scale"] == 5.0  # pipeline default
    assert a.source["model"] == "_FakePipe"
    generate_anchors(pipe, concept="dog", n=1, guidance_scale=0.0)
    assert pipe.calls[-1]["guidance_scale"] == 0.0 and "height" not in pipe.calls[-1]

    with pytest.raises(RuntimeError, match="safety checker"):
        generate_anchors(_FakePipe(flagged=True), concept="dog", n=1)
    for bad in ({"n": 0}, {"steps": 0}, {"seed": -1}, {"prompt_template": "a photo"}, {"size": 4},
                {"guidance_scale": -1.0}):
        with pytest.raises(ValueError):
            generate_anchors(pipe, **{"concept": "dog", **bad})
    with pytest.raises(ValueError, match="concept"):
        generate_anchors(pipe, concept="  ")
    with pytest.raises(TypeError):
        generate_anchors(42, concept="dog")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ folder anchors


def test_load_anchor_folder_real_photos(corpus_dir: Path) -> None:
    folder = corpus_dir / "photos" / "dog"
    a = load_anchor_folder(folder, concept="dog", max_images=3, max_side=64)
    assert len(a) == 3 and a.concept == "dog"
    assert list(a.names) == sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))[:3]
    for im in a.images:
        assert im.dtype == np.float32 and im.ndim == 3 and im.shape[2] == 3
        assert max(im.shape[:2]) == 64 and im.min() >= 0.0 and im.max() <= 1.0 and im.std() > 0.02
    assert a.source["kind"] == "folder" and a.source["path"] == str(folder.resolve())
    assert a.source["n_found"] == 12 and a.source["n_used"] == 3
    assert json.loads(json.dumps(a.source)) == a.source
    with pytest.raises(AttributeError):
        a.concept = "cat"  # type: ignore[misc]


def test_load_anchor_folder_downscale_and_errors(tmp_path: Path) -> None:
    from PIL import Image

    yy, xx = np.mgrid[0:50, 0:100]
    rgb = np.stack([xx / 99.0, yy / 49.0, np.full_like(xx, 0.25, dtype=float)], axis=-1)
    folder = tmp_path / "anchors"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(folder / "sub" / "big.png")
    Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).save(folder / "small.png")
    (folder / "notes.txt").write_text("not an image")
    a = load_anchor_folder(folder, concept="vase", max_side=40)
    assert a.names == ("small.png", "sub/big.png")
    small, big = a.images
    assert small.shape == (10, 12, 3) and np.allclose(small, 200 / 255)  # under max_side: untouched
    assert big.shape == (20, 40, 3)
    # a smooth ramp survives Lanczos downscaling: same mean, same orientation
    assert float(big[..., 0].mean()) == pytest.approx(0.5, abs=0.01)
    assert float(big[..., 2].mean()) == pytest.approx(64 / 255, abs=1e-3)
    assert big[0, -1, 0] > big[0, 0, 0] and big[-1, 0, 1] > big[0, 0, 1]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no images"):
        load_anchor_folder(empty, concept="dog")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_anchor_folder(tmp_path / "missing", concept="dog")
    with pytest.raises(ValueError, match="not a folder"):
        load_anchor_folder(folder / "small.png", concept="dog")
    with pytest.raises(ValueError, match="max_images"):
        load_anchor_folder(folder, concept="dog", max_images=0)


# -------------------------------------------------------------------------------- MobileNet scorer


@pytest.fixture(scope="module")
def photos(corpus_dir: Path) -> dict[str, list[np.ndarray]]:
    return {c: list(load_anchor_folder(corpus_dir / "photos" / c, concept=c, max_side=320).images)
            for c in ("dog", "cat")}


@pytest.fixture(scope="module")
def mobilenet(models_dir: Path) -> MobileNetConceptScorer:
    scorer = make_scorer(None, models_dir=models_dir)
    assert isinstance(scorer, MobileNetConceptScorer)
    return scorer


def test_mobilenet_scorer_on_real_photos(mobilenet: MobileNetConceptScorer,
                                         photos: dict[str, list[np.ndarray]]) -> None:
    assert isinstance(mobilenet, ConceptScorer)
    dogs, cats = photos["dog"], photos["cat"]
    assert len(dogs) == 12 and len(cats) == 8
    assert mobilenet.shows(dogs, "dog").all()
    assert mobilenet.shows(cats, "cat").all()
    assert mobilenet.shows(dogs, "cat").sum() <= 2
    assert mobilenet.shows(cats, "teapot").sum() == 0
    s_dog, s_cat = mobilenet.score(dogs, "dog"), mobilenet.score(dogs, "cat")
    assert s_dog.shape == (12,) and s_dog.dtype == np.float32
    assert (s_dog >= 0).all() and (s_dog <= 1 + 1e-6).all() and (s_dog + s_cat <= 1 + 1e-5).all()
    assert float(np.median(s_dog)) > 0.8 and float(s_cat.max()) < 0.2
    # min_probability is a second, explicit condition on top of the top-k test
    strict = MobileNetConceptScorer(judge=mobilenet.judge, k=5, min_probability=0.999)
    assert strict.threshold == 0.999
    np.testing.assert_array_equal(strict.shows(dogs, "dog"), s_dog >= 0.999)
    d = mobilenet.describe()
    assert (d["name"], d["k"], d["threshold"]) == ("mobilenet", 5, 0.0)
    assert json.loads(json.dumps(d)) == d
    assert mobilenet.score([], "dog").shape == (0,) and mobilenet.shows([], "dog").shape == (0,)


def test_mobilenet_scorer_unknown_concept_and_settings(mobilenet: MobileNetConceptScorer) -> None:
    with pytest.raises(ValueError) as err:
        mobilenet.shows(_rand_images(1, 0), "unicorn")
    msg = str(err.value)
    assert "'unicorn'" in msg and "dog" in msg and "teapot" in msg and "clip" in msg and "\n" not in msg
    assert "teapot" in mobilenet.concepts
    for bad in ({"k": 0}, {"min_probability": 1.5}):
        with pytest.raises(ValueError):
            MobileNetConceptScorer(judge=mobilenet.judge, **bad)


# ------------------------------------------------------------------------------------- CLIP scorer


def _manual_clip_scores(model, processor, images: list[np.ndarray], text: str) -> np.ndarray:
    batch = [np.round(im * 255).astype(np.uint8) for im in images]
    pix = processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
    tok = processor.tokenizer([text], padding=True, return_tensors="pt")
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=pix).pooler_output)
        txt = model.text_projection(model.text_model(**tok).pooler_output)
    return torch.nn.functional.cosine_similarity(img, txt).numpy()


def test_clip_scorer_from_objects(clip_pair) -> None:
    model, processor = clip_pair
    scorer = ClipConceptScorer(clip_pair, batch_size=2)
    assert isinstance(scorer, ConceptScorer) and scorer.threshold == CLIP_THRESHOLD == 0.24
    images = _rand_images(5, 0) + [np.zeros((16, 16, 3), np.float32), np.ones((30, 18, 3), np.float32)]
    s = scorer.score(images, "dog")
    assert s.shape == (7,) and s.dtype == np.float32
    assert (s >= -1).all() and (s <= 1).all() and np.unique(s.round(6)).size > 1
    np.testing.assert_array_equal(s, scorer.score(images, "dog"))  # deterministic
    np.testing.assert_allclose(s, _manual_clip_scores(model, processor, images, "a photo of a dog"), atol=1e-5)
    assert np.abs(s - scorer.score(images, "cat")).max() > 1e-6  # the text matters
    np.testing.assert_array_equal(scorer.shows(images, "dog"), s > 0.24)
    # threshold logic: a cut at the median splits the images
    thr = float(np.median(s))
    mid = ClipConceptScorer(clip_pair, threshold=thr)
    np.testing.assert_array_equal(mid.shows(images, "dog"), s > thr)
    assert 0 < int(mid.shows(images, "dog").sum()) < len(images)
    d = mid.describe()
    assert d["name"] == "clip" and d["threshold"] == thr and d["prompt_template"] == "a photo of a {concept}"
    assert json.loads(json.dumps(d)) == d
    assert scorer.score([], "dog").shape == (0,)
    for bad in ({"threshold": 2.0}, {"prompt_template": "a photo"}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            ClipConceptScorer(clip_pair, **bad)


def test_clip_scorer_loaded_by_path(clip_pair, clip_folder: Path) -> None:
    images = _rand_images(3, 1)
    direct = ClipConceptScorer(clip_pair).score(images, "dog")
    scorer = make_scorer(f"clip:{clip_folder}")
    assert isinstance(scorer, ClipConceptScorer) and scorer.model_name == str(clip_folder)
    np.testing.assert_allclose(scorer.score(images, "dog"), direct, atol=1e-5)
    assert scorer.describe()["model"] == str(clip_folder)


def test_clip_scorer_missing_model_offline(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        ClipConceptScorer("nobody-here/no-such-clip")  # offline from the environment
    msg = str(err.value)
    assert "'nobody-here/no-such-clip'" in msg and "offline" in msg and "\n" not in msg
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        make_scorer(f"clip:{tmp_path / 'no' / 'such' / 'clip'}")


def test_make_scorer_specs(models_dir: Path) -> None:
    assert isinstance(make_scorer("mobilenet", models_dir=models_dir), MobileNetConceptScorer)
    with pytest.raises(ValueError, match="clip:"):
        make_scorer("clip:")
    with pytest.raises(ValueError, match="unknown scorer"):
        make_scorer("resnet")


# ------------------------------------------------------------------ img2img target renderer (Glaze's choice)


def test_img2img_transfer_from_pipeline_object_is_seeded_and_sized(sd_pipe) -> None:
    from sfumato.targets.img2img import img2img_transfer, style_prompt

    assert style_prompt("paul_signac") == "a painting in the style of paul signac"
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(0))
    a = img2img_transfer(x, "cubist", model=sd_pipe.__class__(**sd_pipe.components), steps=2, seed=3)
    b = img2img_transfer(x, "cubist", model=sd_pipe.__class__(**sd_pipe.components), steps=2, seed=3)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="strength"):
        img2img_transfer(x, "cubist", model=sd_pipe, strength=0.0)


def test_cloak_with_img2img_target_from_saved_pipeline_folder(sd_folder: Path, models_dir: Path) -> None:
    import dataclasses

    from sfumato.config import Budget, CloakConfig, Effort
    from sfumato.encoders.tae import tiny_random_tae
    from sfumato.protections.cloak import cloak_array

    with pytest.raises(ValueError, match="needs target_model"):
        CloakConfig(target_renderer="img2img")
    cfg = CloakConfig(target_renderer="img2img", target_model=str(sd_folder), target_style="cubist",
                      budget=Budget(lpips=0.05, linf=8 / 255), effort=Effort(steps=2, resolution=64))
    cfg = dataclasses.replace(cfg, target_tries=1)
    rgb = (np.round(np.random.default_rng(0).random((48, 64, 3)) * 255) / 255).astype(np.float32)  # an 8-bit image
    r = cloak_array(rgb, cfg, encoders=[(tiny_random_tae(seed=2), 1.0)], models_dir=models_dir)
    assert r.image.shape == rgb.shape
    assert r.target["renderer"] == "img2img" and r.target["style"] == "cubist"
    assert np.abs(r.image - rgb).max() <= 8 / 255 + 1e-6
    assert CloakConfig.from_dict(cfg.to_dict()) == cfg
