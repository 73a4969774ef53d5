"""Long-CLIP text encoder and joint-loss CLIP (taco_plus.text.longclip) against the Long-CLIP
reference code and against transformers' CLIPModel with 248 positions.

Three references: (1) the golden file tests/fixtures/longclip_tiny_golden.pt, written by the
reference code (tests/longclip_golden.py) on a seeded random-init Long-CLIP in the release
format, checked everywhere; (2) the reference code itself, side by side, when
``LONGCLIP_REFERENCE=/path/to/Long-CLIP`` is set (skipped otherwise: CI cannot fetch it);
(3) transformers' ``CLIPModel`` for the Hugging Face folder path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from taco_plus.schemas import compose, to_container
from taco_plus.losses import ClipJointLoss
from taco_plus.text import ClipTextEncoder, ClipWeightsUnavailableError, bpe_ids, load_clip, tokenize
from taco_plus.text.longclip import longclip_weights
from tests import longclip_golden
from tests.conftest import shared_path

TOL = 1e-4  # relative, at every position
REFERENCE = os.environ.get("LONGCLIP_REFERENCE")
needs_reference = pytest.mark.skipif(
    not REFERENCE, reason="LONGCLIP_REFERENCE=/path/to/Long-CLIP (github.com/beichenzbc/Long-CLIP) is not set: "
    "the side-by-side tests need the reference code (the golden-file tests cover CI)")


def rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest relative error over the rows (positions, captions, images)."""
    return float(((ours - ref).norm(dim=-1) / ref.norm(dim=-1)).max())


def ours(model_name: str, pretrained: str, captions: list[str], pixels: torch.Tensor) -> dict:
    """Ids, states (B, 248, width), EOT and image embeddings through the training components."""
    enc = ClipTextEncoder(model_name, pretrained, max_tokens=248, pad="zero")
    feats = enc(captions)
    joint = ClipJointLoss(model_name, pretrained, context_length=248)
    with torch.no_grad():
        image = joint.clip.encode_image(pixels)
    return dict(ids=torch.tensor([layout.ids for layout in feats.layouts]), states=feats.tokens, mask=feats.mask,
                text=enc.eot_embedding(feats), joint_text=joint.text_embedding(captions), image=image, encoder=enc)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    path = Path(__file__).parent / "fixtures" / "longclip_tiny_golden.pt"
    g = torch.load(path, weights_only=True)
    state = dict(g["state_dict"])
    table = torch.zeros(49408, g["token_rows"].shape[1], dtype=g["token_rows"].dtype)
    table[g["token_ids"]] = g["token_rows"]
    state["token_embedding.weight"] = table
    g["checkpoint"] = tmp_path_factory.mktemp("longclip") / "longclip-tiny.pt"
    torch.save(state, g["checkpoint"])  # the release format, as the reference wrote it
    return g


def test_golden_tokenization_equals_the_reference(golden):
    assert [tokenize(c, 248, pad="zero").ids for c in golden["captions"]] == golden["ids"].tolist()
    assert all(len(bpe_ids(c)) > 75 for c in golden["captions"])  # each longer than CLIP's 77 positions


def test_golden_states_and_embeddings_equal_the_reference(golden):
    n = golden["text_embeddings"].shape[0]
    out = ours(golden["model_name"], str(golden["checkpoint"]), golden["captions"][:n], golden["pixels"].float())
    pads = longclip_golden.pad_positions(golden["ids"][:n].long())
    assert out["mask"].tolist() == (~pads).tolist()
    errors = {
        "real positions": rel(out["states"][~pads], golden["text_states"]),
        "pad positions (pad rule)": rel(out["states"][pads], golden["pad_states"]),
        "text embedding": rel(out["text"], golden["text_embeddings"]),
        "joint-loss text embedding": rel(out["joint_text"], F.normalize(golden["text_embeddings"], dim=-1)),
        "image embedding": rel(out["image"], golden["image_embeddings"]),
    }
    print("golden relative errors:", errors)
    assert max(errors.values()) < TOL, errors
    assert str(golden["checkpoint"]) in out["encoder"].describe()


def test_golden_is_not_met_by_a_wrong_positional_table(golden, tmp_path):
    """Rows >= 20 come from positional_embedding_res: summing or swapping the tables is caught."""
    state = torch.load(golden["checkpoint"], weights_only=True)
    state["positional_embedding_res"], state["positional_embedding"] = (state["positional_embedding"],
                                                                        state["positional_embedding_res"])
    torch.save(state, tmp_path / "swapped.pt")
    enc = ClipTextEncoder(golden["model_name"], str(tmp_path / "swapped.pt"), max_tokens=248, pad="zero")
    feats = enc(golden["captions"][:1])
    real = ~longclip_golden.pad_positions(golden["ids"][:1].long())
    assert rel(feats.tokens[real], golden["text_states"][: int(real.sum())]) > 0.1


def test_release_architectures_match_the_reference(golden):
    """LongCLIP-B / LongCLIP-L take the released files' every key at its shape (strict loading)."""
    from taco_plus.text import register_model_configs

    register_model_configs()
    for name, shapes in golden["release_shapes"].items():
        config = open_clip.get_model_config(name)
        with torch.device("meta"):
            model = open_clip.model.CLIP(**{k: v for k, v in config.items()})
        expected = {k: v for k, v in shapes.items() if k != "positional_embedding_res"}
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == expected, name
        assert compose([f"text_encoder={name.lower().replace('-', '_')}", "model=tiny"]).model.text_dim == shapes[
            "ln_final.weight"][0]


# ------------------------------------------------------------ the reference, side by side


@pytest.fixture(scope="module")
def reference():
    return longclip_golden.import_reference(REFERENCE)


@needs_reference
def test_reference_reproduces_the_golden_file(reference):
    fresh = longclip_golden.make_golden(Path(REFERENCE))
    stored = torch.load(Path(__file__).parent / "fixtures" / "longclip_tiny_golden.pt", weights_only=True)
    for key in ("ids", "token_ids", "text_states", "pad_states", "text_embeddings", "image_embeddings"):
        assert torch.equal(fresh[key], stored[key]), key
    assert fresh["release_shapes"] == stored["release_shapes"]


@needs_reference
@pytest.mark.parametrize("width,layers", [(128, 2), (256, 3), (512, 12)])
def test_reference_side_by_side(reference, tmp_path, width, layers):
    """A multi-head random Long-CLIP (heads = width / 64, full vocabulary; 512: LongCLIP-B's
    own architecture, 50 s), captions of every length: our states, text and image embeddings
    equal the reference's at every position."""
    name = f"taco-test-longclip-{width}"
    config = {"embed_dim": 96, "quick_gelu": True,
              "vision_cfg": {"image_size": 64, "patch_size": 16, "width": width, "head_width": 64, "layers": 2},
              "text_cfg": {"context_length": 248, "vocab_size": 49408, "width": width, "heads": width // 64,
                           "layers": layers}}
    if width == 512:
        name, config = "LongCLIP-B", open_clip.get_model_config("LongCLIP-B")
    else:
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(tmp_path / f"{name}.json")
    state = longclip_golden.random_release(reference, longclip_golden.dims_of(config), seed=width)
    torch.save(state, tmp_path / "longclip.pt")
    captions = ["a red boat", "", *longclip_golden.CAPTIONS]  # 2 tokens to > 248
    size = config["vision_cfg"]["image_size"]
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    ref = longclip_golden.reference_outputs(reference, tmp_path / "longclip.pt", captions, pixels)
    out = ours(name, str(tmp_path / "longclip.pt"), captions, pixels)
    pads = longclip_golden.pad_positions(ref["ids"])
    errors = {
        "ids equal": torch.equal(out["ids"], ref["ids"]),
        "real positions": rel(out["states"][~pads], ref["text_states"][~pads]),
        "pad positions (pad rule)": rel(out["states"][pads], ref["masked_states"][pads]),
        "text embedding": rel(out["text"], ref["text_embeddings"]),
        "image embedding": rel(out["image"], ref["image_embeddings"]),
        "pad positions vs encode_text_full (causal only; not the pad rule)":
            rel(out["states"][pads], ref["text_states"][pads]),
    }
    print(f"{name}, width {width}, {layers} layers:", errors)
    assert errors["ids equal"] and max(v for k, v in list(errors.items())[1:5]) < TOL, errors


@needs_reference
def test_reference_tokenization_of_long_real_captions(reference):
    """Every Kodak, CLIC and COCO caption of ../shared, joined into captions of 80-400 tokens."""
    data = shared_path("data")
    texts = [*json.loads((data / "captions" / "kodak_ofa.json").read_text()).values(),
             *json.loads((data / "captions" / "clic_ofa.json").read_text()).values()]
    coco = json.loads((data / "coco_mini" / "annotations" / "captions_train2017.json").read_text())
    texts += [a["caption"] for a in coco["annotations"]]
    long = [". ".join(texts[i : i + n]) for n in (8, 30) for i in range(0, len(texts), n)]
    ref = reference.tokenize(long, truncate=True).long().tolist()
    mine = [tokenize(c, 248, pad="zero").ids for c in long]
    differ = [c for c, a, b in zip(long, mine, ref) if a != b]
    print(f"{len(long)} long captions ({len(texts)} real captions), {len(differ)} tokenized differently")
    assert not differ, differ[0][:200]


# ------------------------------------------------------------ Hugging Face folder


def test_hugging_face_folder_equals_transformers_clipmodel(tmp_path):
    transformers = pytest.importorskip("transformers", reason="pip install transformers (a test dependency)")
    tower = dict(hidden_size=128, intermediate_size=512, num_attention_heads=2, hidden_act="quick_gelu")
    config = transformers.CLIPConfig(
        text_config=dict(tower, num_hidden_layers=2, max_position_embeddings=248, vocab_size=49408,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=0),
        vision_config=dict(tower, num_hidden_layers=2, image_size=64, patch_size=16), projection_dim=96)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # biases and norms away from 0 and 1
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "hf")  # config.json + model.safetensors
    name = "taco-test-longclip-hf"
    arch = {"embed_dim": 96, "quick_gelu": True,
            "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "head_width": 64, "layers": 2},
            "text_cfg": {"context_length": 248, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}}
    (tmp_path / f"{name}.json").write_text(json.dumps(arch))
    open_clip.add_model_config(tmp_path / f"{name}.json")
    captions = ["a red boat", *longclip_golden.CAPTIONS[:3]]
    pixels = torch.randn(2, 3, 64, 64)
    out = ours(name, str(tmp_path / "hf"), captions, pixels)
    with torch.no_grad():
        hf = model.text_model(input_ids=out["ids"], attention_mask=out["mask"].long()).last_hidden_state
        text = model.get_text_features(input_ids=out["ids"], attention_mask=out["mask"].long())
        image = model.get_image_features(pixel_values=pixels)
    text, image = (getattr(t, "pooler_output", t) for t in (text, image))  # transformers 5 returns outputs
    errors = {"states": rel(out["states"].flatten(0, 1), hf.flatten(0, 1)), "text": rel(out["text"], text),
              "image": rel(out["image"], image)}
    print("Hugging Face folder relative errors:", errors)
    assert max(errors.values()) < TOL, errors
    # pytorch_model.bin instead of safetensors: the same model
    state = {k: v for k, v in model.state_dict().items()}
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
    assert torch.equal(ClipTextEncoder(name, str(tmp_path / "hf"), max_tokens=248, pad="zero")(captions).tokens,
                       out["states"])


# ------------------------------------------------------------ weights: where from, bad input


def test_release_is_read_from_the_hugging_face_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = tmp_path / "models--BeichenZhang--LongCLIP-B" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "longclip-B.pt").write_bytes(b"weights")
    (tmp_path / "models--BeichenZhang--LongCLIP-B" / "refs").mkdir()
    (tmp_path / "models--BeichenZhang--LongCLIP-B" / "refs" / "main").write_text("0" * 40)
    assert longclip_weights("LongCLIP-B", "release", str(tmp_path)).read_bytes() == b"weights"
    with pytest.raises(ClipWeightsUnavailableError, match=r"taco-plus download longclip-l.*longclip-L\.pt"):
        longclip_weights("LongCLIP-L", "release", str(tmp_path))


def test_missing_weights_fail_fast_saying_what_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = to_container(compose(["experiment=captions_regenerated_longclip"]))
    assert (cfg["text_encoder"] | cfg["loss"]["joint"]).items() >= {"model_name": "LongCLIP-B", "pretrained": "release",
                                                                   "max_tokens": 248, "context_length": 248}.items()
    with pytest.raises(ClipWeightsUnavailableError, match="run `taco-plus download longclip-b`"):
        ClipTextEncoder("LongCLIP-B", "release")
    with pytest.raises(FileNotFoundError, match="no such file or folder: /nowhere/longclip-B.pt.*taco-plus download"):
        ClipJointLoss("LongCLIP-B", "/nowhere/longclip-B.pt")


def test_bad_checkpoints_are_refused_with_one_line(golden, tmp_path):
    state = torch.load(golden["checkpoint"], weights_only=True)
    clip_only = {k: v for k, v in state.items() if k != "positional_embedding_res"}
    torch.save(clip_only, tmp_path / "clip.pt")
    with pytest.raises(ValueError, match="no positional_embedding_res: not a Long-CLIP checkpoint"):
        load_clip("taco-tiny-longclip", tmp_path / "clip.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable Long-CLIP checkpoint"):
        load_clip("taco-tiny-longclip", tmp_path / "junk.pt")
    torch.save({"weights": torch.nn.Linear(2, 2)}, tmp_path / "pickle.pt")  # weights_only=True refuses objects
    with pytest.raises(ValueError, match="not a readable Long-CLIP checkpoint"):
        load_clip("taco-tiny-longclip", tmp_path / "pickle.pt")
    other = dict(state, **{"ln_final.weight": torch.ones(128)})
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit the taco-tiny-longclip architecture"):
        load_clip("taco-tiny-longclip", tmp_path / "other.pt")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"text_config": {"hidden_size": 64}}))
    with pytest.raises(ValueError, match="77 text positions"):
        load_clip("taco-tiny-longclip", tmp_path / "hf")
    with pytest.raises(ValueError, match="no released Long-CLIP checkpoint"):
        load_clip("taco-tiny-longclip", "release")


def test_the_caption_policy_reaches_248_tokens_only_on_a_248_position_tower():
    assert len(tokenize("a cat " * 300, 248).ids) == 248
    with pytest.raises(ValueError, match="max_tokens"):
        tokenize("a cat", 249)
    with pytest.raises(ValueError, match="needs more than the tower's 77 positions"):
        ClipTextEncoder("taco-tiny-clip", None, max_tokens=100)
    assert compose(["debug=tiny", "text_encoder.max_tokens=248"]).text_encoder.model_name == "taco-tiny-longclip"
    assert compose(["debug=tiny"]).text_encoder.model_name == "taco-tiny-clip"


@pytest.mark.parametrize("attention", ["full", "linformer_text", "linformer"])
def test_token_weights_and_linformer_take_long_clip_features(attention):
    """TF-IDF weights on the 248-position layout reach a word past CLIP's 77 positions and move
    the latent through each attention option; so does changing that word."""
    from taco_plus.checkpoint import build_model
    from taco_plus.weighting import TfidfStatistics, TfidfWeighting

    enc = ClipTextEncoder("taco-tiny-longclip", None, max_tokens=248, pad="zero")
    captions = [longclip_golden.CAPTIONS[0] + " a zebra", "a red bus"]
    feats = enc(captions)
    zebra = feats.layouts[0].ids.index(bpe_ids("zebra")[0])
    assert zebra > 77  # beyond CLIP's positions
    weights = TfidfWeighting(TfidfStatistics({"zebra": 4.0}, 10, "0" * 64)).weights(feats.layouts, captions)
    assert weights.shape == (2, 248) and weights[0, zebra] > 1 and weights[0, 200:].eq(1).all()  # padding: 1
    node = to_container(compose([f"attention={attention}", "model=tiny", "text_encoder=tiny",
                                 "text_encoder.max_tokens=248", "text_encoder.pad=zero"]).model)
    torch.manual_seed(0)
    model = build_model(node).eval()
    for name, p in model.named_parameters():
        if name.endswith("gamma"):  # 0 at init: make the text matter
            torch.nn.init.normal_(p, std=0.5)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        plain = model.analysis(x, feats.tokens, feats.mask)
        weighted = model.analysis(x, feats.tokens, feats.mask, weights)
        other = enc([longclip_golden.CAPTIONS[0] + " a giraffe", "a red bus"])
        changed = model.analysis(x, other.tokens, other.mask)
    assert (weighted - plain)[0].abs().max() > 1e-4
    assert (changed - plain)[0].abs().max() > 1e-4
