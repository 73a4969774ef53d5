"""TACO with every option of the ``attention`` group: composition, every combination with
the other groups that reach the model, long captions, checkpoints, fine-tuning starts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from taco_plus.checkpoint import build_model, load_codec, read_checkpoint, save_codec
from taco_plus.schemas import CONFIG_DIR, compose, to_container
from taco_plus.models import TACO
from taco_plus.text import ClipTextEncoder
from taco_plus.text.tokenizer import tokenize
from taco_plus.train.trainer import load_initial_weights
from taco_plus.weighting import TfidfStatistics, load_corpus
from tests.conftest import shared_path

# The groups whose options change the model or what it is given.
MODEL_GROUPS = ["model", "text_encoder", "weighting"]
CAPTIONS = ["A golden retriever runs past the Eiffel Tower in Paris.", "a red bus"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


ATTENTION = options("attention")
TEXT_OPTIONS = [a for a in ATTENTION if compose([f"attention={a}"]).attention.caption_summary is not None]


def visible_gammas(model: TACO) -> TACO:
    """New adapters start as the identity (gamma = 0); make the text matter."""
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def tiny(attention: str, *overrides: str) -> TACO:
    cfg = compose([f"attention={attention}", "model=tiny", "text_encoder=tiny", *overrides])
    torch.manual_seed(0)
    return visible_gammas(build_model(to_container(cfg.model)))


@pytest.fixture(scope="module")
def tfidf_artefact(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfidf")
    (root / "captions.json").write_text(json.dumps({"a.png": CAPTIONS}), "utf-8")
    TfidfStatistics.fit(load_corpus(root / "captions.json")).save(root / "tfidf.json")
    return str(root / "tfidf.json")


_ROUND_TRIPPED: set[str] = set()


@pytest.mark.parametrize("group, option", [(g, o) for g in MODEL_GROUPS for o in options(g)])
@pytest.mark.parametrize("attention", ATTENTION)
def test_every_attention_option_combines_with_every_option(attention, group, option, tfidf_artefact):
    """Composes, builds the model from its resolved node, and round-trips it bit-exactly
    with the weighting's inputs (tiny sizes; official sizes are only built)."""
    defaults = {"model": "tiny", "text_encoder": "tiny", "weighting": "none", group: option}
    cfg = compose([f"attention={attention}", *(f"{g}={o}" for g, o in defaults.items())])
    for key in ("artefact", "tfidf_artefact"):
        if key in cfg.weighting:
            cfg.weighting[key] = tfidf_artefact
    node = to_container(cfg.model)  # a plain container, as stored in checkpoints
    model = build_model(node)
    assert (model.g_a.caption_summary is None) == (cfg.attention.caption_summary is None)
    key = json.dumps([node, cfg.weighting._target_], sort_keys=True)
    if model.N > 64 or key in _ROUND_TRIPPED:
        return  # official sizes: built is enough; identical combinations: round-tripped once
    _ROUND_TRIPPED.add(key)
    if "Ner" in cfg.weighting._target_:
        pytest.importorskip(cfg.weighting.pipeline)
    weighting = instantiate(cfg.weighting)
    layout = tokenize(CAPTIONS[0], cfg.text_encoder.max_tokens)
    torch.manual_seed(2)
    text = SimpleNamespace(tokens=torch.randn(1, len(layout.ids), model.text_dim),
                           mask=torch.tensor([layout.mask]), layouts=[layout])
    tokens, mask, weights = weighting.model_inputs(text, CAPTIONS[:1])
    visible_gammas(model).update(force=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        forward = model(x, tokens, mask, weights)["x_hat"]
    enc = model.compress(x, tokens, mask, weights)
    assert torch.equal(model.decompress(enc["strings"], enc["shape"])["x_hat"], forward)


def test_linformer_is_linformer_text_plus_linformer_image():
    nodes = {a: to_container(compose([f"attention={a}"]).attention) for a in ATTENTION}
    full, text, image, both = (nodes[a] for a in ("full", "linformer_text", "linformer_image", "linformer"))
    assert both == {**full, **{k: v for k, v in text.items() if v != full[k]},
                    **{k: v for k, v in image.items() if v != full[k]}}
    assert text["extractor"] == full["extractor"] and image["caption_summary"] is None


@pytest.mark.parametrize("max_tokens, longest", [(38, 38), (77, 77), ("chunked", 2464)])
def test_k_must_be_below_the_longest_caption(max_tokens, longest):
    text_encoder = f"text_encoder.max_tokens={max_tokens}"
    summary = compose(["attention=linformer_text", text_encoder]).model.caption_summary
    assert (summary.k, summary.max_len) == (16, longest)  # the projection covers the longest caption
    for attention in ("linformer_text", "linformer"):
        cfg = compose([f"attention={attention}", text_encoder, f"attention.k={longest}"])
        with pytest.raises(Exception, match=f"attention.k={longest} is not below the longest caption"):
            to_container(cfg)
        cfg = compose([f"attention={attention}", text_encoder, f"attention.k={longest}",
                       "attention.allow_k_not_below_caption=true"])  # fmt: skip
        assert to_container(cfg.model)["caption_summary"]["k"] == longest
    assert to_container(compose(["attention=linformer_image", text_encoder]).model)["caption_summary"] is None


def test_training_refuses_such_a_k_before_building_anything(tmp_path):
    from taco_plus.train.run import train

    with pytest.raises(Exception, match="attention.k=38 is not below the longest caption"):
        train(compose(["debug=tiny", "attention=linformer_text", "attention.k=38"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def caption_folder(root, captions: dict) -> str:
    from PIL import Image

    root.mkdir()
    for name in captions:
        Image.fromarray((torch.rand(64, 64, 3) * 255).to(torch.uint8).numpy()).save(root / name)
    (root / "captions.json").write_text(json.dumps(captions), "utf-8")
    return ["debug=tiny", "loss=rd", "data=folder", f"data.image_dir={root}", "captions=file",
            f"captions.path={root / 'captions.json'}", "trainer.max_steps=1", "attention=linformer_text"]


def test_training_checks_k_against_the_real_caption_lengths(tmp_path, caplog):
    """38-token layouts, but COCO-like captions mostly shorter than k = 16 real tokens: the run
    says so in its log and its run config; captions all within k are refused."""
    from taco_plus.train.run import train

    short = {"a.png": "a red bus", "b.png": "two cats asleep on a blue sofa", "c.png": "a bowl of green apples"}
    with pytest.raises(ValueError, match="attention.k=16 is not below the longest caption of captions .9 real tokens"):
        train(compose(caption_folder(tmp_path / "short", short)), tmp_path / "refused")
    mixed = {**short, "d.png": "a lighthouse on a rocky island near the sea at dusk, with waves breaking on the "
                               "black rocks below and gulls overhead"}
    with caplog.at_level("INFO"):
        result = train(compose(caption_folder(tmp_path / "mixed", mixed)), tmp_path / "run")
    stats = {"captions": 4, "median": 8.0, "p90": 20.2, "max": 25, "at_most_k": 0.75,
             "note": "75% of the captions have at most attention.k=16 real tokens: the caption summary compresses "
                     "few of them (docs/attention.md)"}
    assert stats["note"] in caplog.text and "'median': 8.0" in caplog.text
    assert read_checkpoint(result.final_checkpoint)["config"]["attention"]["caption_tokens"] == stats
    assert "caption_tokens:\n    captions: 4" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize("override", ["attention.kk=3", "attention.caption_sumary.k=3", "attention.injektor=x"])
def test_misspelt_attention_key_fails_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose(["attention=linformer", override])


def test_option_file_with_a_misspelt_key_fails(tmp_path):
    (tmp_path / "attention").mkdir()
    (tmp_path / "attention" / "typo.yaml").write_text(
        "defaults:\n  - /schema/taco_plus.schemas.AttentionConfig@_here_\n  - _self_\n\nextractr: {}\n")
    with pytest.raises(ConfigCompositionException, match="extractr"):
        compose([f"hydra.searchpath=[file://{tmp_path}]", "attention=typo"])


def long_caption(words: int) -> str:
    vocabulary = (
        "a red brick lighthouse stands on a rocky shore under a pale sky while gulls circle above "
        "the white railing and waves break against dark stones near a small wooden boat"
    ).split()
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words))


@pytest.mark.parametrize("attention", TEXT_OPTIONS)
def test_thousand_word_caption_from_text_to_bitstream(attention):
    """Chunked CLIP features of a 1,000-word caption reach the codec untruncated."""
    encoder = ClipTextEncoder("taco-tiny-clip", pretrained=None, max_tokens="chunked")
    caption = long_caption(1000)
    features = encoder([caption])
    assert features.layouts[0].truncated == 0
    assert features.tokens.shape[1] > 1000 and bool(features.mask.all())

    model = tiny(attention, "text_encoder.max_tokens=chunked")
    model.update(force=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        forward = model(x, features.tokens, features.mask)["x_hat"]
    enc = model.compress(x, features.tokens, features.mask)
    assert torch.equal(model.decompress(enc["strings"], enc["shape"])["x_hat"], forward)

    # The last words count: changing only the end of the caption changes the latent.
    other = encoder([caption.rsplit(" ", 3)[0] + " purple giraffe umbrella"])
    with torch.no_grad():
        y_a = model.analysis(x, features.tokens, features.mask)
        y_b = model.analysis(x, other.tokens, other.mask)
    assert (y_a - y_b).abs().max() > 1e-4


@pytest.mark.parametrize("attention", ATTENTION)
def test_batched_captions_of_different_lengths_match_single_runs(attention):
    """Right-padding in a batch does not change any item's latent."""
    encoder = ClipTextEncoder("taco-tiny-clip", pretrained=None, max_tokens="chunked")
    captions = [long_caption(200), "a lighthouse"]
    batch = encoder(captions)
    assert not bool(batch.mask[1].all())  # the short caption is padded
    model = tiny(attention, "text_encoder.max_tokens=chunked")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        y = model.analysis(x, batch.tokens, batch.mask)
        for i, caption in enumerate(captions):
            alone = encoder([caption])
            torch.testing.assert_close(y[i : i + 1], model.analysis(x[i : i + 1], alone.tokens), rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention", TEXT_OPTIONS)
def test_caption_beyond_the_longest_fails_clearly(attention):
    model = tiny(attention)  # 38-token text encoder: the projection covers 38 positions
    with pytest.raises(ValueError, match="caption of 39 tokens exceeds the caption summary's max_len=38"):
        model.analysis(torch.rand(1, 3, 64, 64), torch.randn(1, 39, 64))


@pytest.mark.parametrize("attention", ATTENTION)
def test_checkpoint_round_trip(attention, tmp_path):
    cfg = compose([f"attention={attention}", "model=tiny", "text_encoder=tiny"])
    node = to_container(cfg.model)
    model = visible_gammas(build_model(node))
    save_codec(tmp_path / "codec.pt", model, node, to_container(cfg.text_encoder))
    loaded = load_codec(tmp_path / "codec.pt")
    x, text = torch.rand(1, 3, 64, 64), torch.randn(1, 12, model.text_dim)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.analysis(x, text), model.analysis(x, text), rtol=0, atol=0)
    assert instantiate(loaded.text_encoder_config).width == model.text_dim


# The official adapter: the Injector/Extractor blocks at g_a.analysis_transform.{8,14,15}.
OFFICIAL_ADAPTER = tuple(f"g_a.analysis_transform.{i}." for i in (8, 14, 15))


@pytest.mark.parametrize("attention", ATTENTION)
def test_official_checkpoint_initialises_every_option_for_fine_tuning(attention, tmp_path):
    """An official (full-attention) checkpoint loads into every option; the backbone is
    copied, and the adapter that fine-tuning trains is exactly what is not backbone."""
    golden = torch.load(shared_path("reference", "taco_golden_small.pt"), weights_only=False)
    official = golden["state_dict"]
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.items()}}, tmp_path / "official.pth.tar")
    model = tiny(attention, "model.num_heads=8")
    load_initial_weights(model, tmp_path / "official.pth.tar")

    backbone = {k for k in official if not k.startswith(OFFICIAL_ADAPTER)}
    params = dict(model.named_parameters())
    trained = {id(p) for p in model.adapter_parameters()}
    adapter = {n for n, p in params.items() if id(p) in trained}
    assert adapter == set(params) - backbone
    state = model.state_dict()
    for key in backbone & set(params):
        assert torch.equal(state[key], official[key]), key
    if attention == "full":  # same architecture: every tensor is the official one
        assert all(torch.equal(state[k], official[k]) for k in params)

    # ... and back: this option's checkpoint initialises a full-attention model.
    save_codec(tmp_path / "own.pt", model, {}, {})
    load_initial_weights(tiny("full", "model.num_heads=8"), tmp_path / "own.pt")


def test_foreign_backbone_is_refused(tmp_path):
    state = tiny("full").state_dict()
    state["g_a.analysis_transform.0.extra"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "odd.pth.tar")
    with pytest.raises(ValueError, match="outside the text adapter"):
        load_initial_weights(tiny("linformer"), tmp_path / "odd.pth.tar")
