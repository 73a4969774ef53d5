"""Text features equal the TACO reference's: Hugging Face ``CLIPTokenizer`` + ``CLIPTextModel``.

The reference tokenizes with ``padding="max_length", max_length=38, truncation=True`` and
runs ``CLIPTextModel(input_ids, attention_mask).last_hidden_state``. Here the same
transformers classes run offline on the tiny CLIP: its open_clip weights are converted
to a ``CLIPTextModel`` and the tokenizer files are written from open_clip's bundled BPE
merges. The CLI tests code with an official-format checkpoint (the golden small model,
whose text width 64 is the tiny CLIP's).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from taco_plus.checkpoint import load_codec
from taco_plus.cli import main as cli_main
from taco_plus.coding.bitstream import unpack
from taco_plus.images import load_image, pad_to_multiple, save_png
from taco_plus.text import ClipTextEncoder, register_model_configs, tiny_clip
from taco_plus.text.clip_loading import MODEL_CONFIG_DIR
from tests.conftest import shared_path

transformers = pytest.importorskip("transformers", reason="the reference's text pipeline (pip install transformers)")

CAPTIONS = [
    "a brick building with red doors and windows",
    "",
    "The Eiffel Tower in Paris, at night!",
    "the man\u2019s \u201cbig\u201d \ufb01sh &amp; chips, \uff21\uff22 caf\u00e9",
    " ".join(f"a red boat number {i} near the old lighthouse" for i in range(20)),  # truncated
]


def hf_tokenizer_files(folder: Path) -> Path:
    """``vocab.json`` + ``merges.txt`` of CLIP's BPE, written from open_clip's bundled merges."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = open_clip.SimpleTokenizer()
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(piece, piece): i for piece, i in tok.encoder.items()}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = gzip.open(open_clip.tokenizer.default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def hf_text_model(clip, quick_gelu: bool = False):
    """open_clip's text tower as a Hugging Face ``CLIPTextModelWithProjection``."""
    blocks = clip.transformer.resblocks
    width, heads = clip.token_embedding.embedding_dim, blocks[0].attn.num_heads
    config = transformers.CLIPTextConfig(
        vocab_size=clip.token_embedding.num_embeddings, hidden_size=width, intermediate_size=blocks[0].mlp.c_fc.out_features,
        num_hidden_layers=len(blocks), num_attention_heads=heads, max_position_embeddings=clip.positional_embedding.shape[0],
        hidden_act="quick_gelu" if quick_gelu else "gelu", layer_norm_eps=1e-5, projection_dim=clip.text_projection.shape[1],
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    src = clip.state_dict()
    state = {
        "text_model.embeddings.token_embedding.weight": src["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": src["positional_embedding"],
        "text_model.final_layer_norm.weight": src["ln_final.weight"],
        "text_model.final_layer_norm.bias": src["ln_final.bias"],
        "text_projection.weight": src["text_projection"].t(),
    }
    for i in range(len(blocks)):
        a, b = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for name, w in zip("qkv", src[a + "attn.in_proj_weight"].chunk(3)):
            state[b + f"self_attn.{name}_proj.weight"] = w
        for name, w in zip("qkv", src[a + "attn.in_proj_bias"].chunk(3)):
            state[b + f"self_attn.{name}_proj.bias"] = w
        for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            for p in ("weight", "bias"):
                state[b + f"{theirs}.{p}"] = src[a + f"{ours}.{p}"]
    model = transformers.CLIPTextModelWithProjection(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    return model


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    return transformers.CLIPTokenizer.from_pretrained(str(hf_tokenizer_files(tmp_path_factory.mktemp("hf_tok"))))


@pytest.fixture(scope="module")
def clip():
    return tiny_clip(seed=1)


def reference_features(clip, tokenizer, captions, quick_gelu=False):
    """What TACO's code feeds the adapter: (B, 38, width) states and the token ids."""
    batch = tokenizer(captions, padding="max_length", max_length=38, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = hf_text_model(clip, quick_gelu)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.last_hidden_state, batch["input_ids"], batch["attention_mask"].bool()


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_token_ids_equal_hugging_face(hf_tokenizer):
    captions = list(CAPTIONS)
    for name in ("kodak_ofa.json", "clic_ofa.json"):
        captions += json.loads(shared_path("data", "captions", name).read_text(encoding="utf-8")).values()
    for split in ("train", "val"):
        coco = shared_path("data", "coco_mini", "annotations", f"captions_{split}2017.json")
        captions += [a["caption"] for a in json.loads(coco.read_text(encoding="utf-8"))["annotations"]]
    enc = ClipTextEncoder.from_model(tiny_clip(), max_tokens=38, pad="eot")
    ours = enc.tokenize(captions)
    theirs = hf_tokenizer(captions, padding="max_length", max_length=38, truncation=True)
    for caption, layout, ids, mask in zip(captions, ours, theirs["input_ids"], theirs["attention_mask"]):
        assert layout.ids == ids, caption
        assert layout.mask == [bool(m) for m in mask], caption


def test_states_equal_hugging_face_at_every_position(clip, hf_tokenizer):
    """Pad positions included: Hugging Face keeps every query off the pad keys."""
    expected, ids, mask = reference_features(clip, hf_tokenizer, CAPTIONS)
    feats = ClipTextEncoder.from_model(clip, max_tokens=38, pad="eot")(CAPTIONS)
    assert feats.tokens.shape == expected.shape and torch.equal(feats.mask, mask)
    assert torch.equal(torch.tensor([layout.ids for layout in feats.layouts]), ids)
    assert rel_err(feats.tokens[feats.mask], expected[mask]) < 1e-4
    assert rel_err(feats.tokens[~feats.mask], expected[~mask]) < 1e-4


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official-format TACO checkpoint (text width 64), tiny-CLIP text weights saved as
    a downloaded hub folder is (QuickGELU, like OpenAI's), and that CLIP model."""
    golden = torch.load(shared_path("reference", "taco_golden_small.pt"), weights_only=False)
    root = tmp_path_factory.mktemp("official")
    torch.save({"epoch": 49, "state_dict": {f"module.{k}": v for k, v in golden["state_dict"].items()}},
               root / "taco.pth.tar")
    save_png(golden["x"], root / "image.png")
    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        clip = open_clip.create_model("taco-tiny-clip", quick_gelu=True).eval()
    weights = root / "clip"
    weights.mkdir()
    cfg = {**json.loads((MODEL_CONFIG_DIR / "taco-tiny-clip.json").read_text()), "quick_gelu": True}
    (weights / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_file(clip.state_dict(), str(weights / "open_clip_model.safetensors"))
    return root, weights, clip


def test_cli_codes_official_checkpoint_with_the_reference_text_features(official, hf_tokenizer, tmp_path, capsys):
    root, weights, clip = official
    caption = "a brick building with red doors and windows"  # 10 real tokens, 28 attended pads
    out = tmp_path / "image.tacoz"
    assert cli_main(["compress", str(root / "image.png"), "--caption", caption, "--checkpoint",
                     str(root / "taco.pth.tar"), "--text-weights", str(weights), "-o", str(out)]) == 0

    # The reference: Hugging Face tokenizer + CLIPTextModel, then the official model's compress.
    model = load_codec(root / "taco.pth.tar").model
    text, _, _ = reference_features(clip, hf_tokenizer, [caption], quick_gelu=True)
    expected = model.compress(pad_to_multiple(load_image(root / "image.png")[None]), text)["strings"]
    payload = unpack(out.read_bytes())
    assert [[payload.y_string], [payload.z_string]] == expected

    # Decoding needs no text weights (offline: the default OpenAI weights are absent here).
    png = tmp_path / "decoded.png"
    assert cli_main(["decompress", str(out), "--checkpoint", str(root / "taco.pth.tar"), "-o", str(png)]) == 0
    assert load_image(png).shape == load_image(root / "image.png").shape


def test_cli_text_weights_errors(official, tmp_path, capsys):
    root, _, _ = official
    args = ["compress", str(root / "image.png"), "--caption", "a cat", "--checkpoint", str(root / "taco.pth.tar")]
    assert cli_main([*args, "--text-weights", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    # Without them, offline: what to download and where, no traceback.
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "timm/vit_base_patch32_clip_224.openai" in err and "--text-weights PATH" in err
