"""Each difference between registered runs comes from the ablation it declares: every run starts
from its base's backbone, and an image codes the same whatever else is in its batch. Checked on
what each run builds (``build_model``, its text encoder and weighting, ``text_inputs``: the
trainer's path) at ``debug=tiny`` sizes."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from hydra.utils import instantiate

from taco_plus.schemas import compose
from taco_plus.experiments.registry import declared, run_names
from taco_plus.text import text_inputs
from taco_plus.train.run import build_model, build_weighting
from taco_plus.weighting import TfidfStatistics, load_corpus

RUNS = run_names()
SHORT = "a red bus"
# 20 sentences, ~300 BPE pieces: cut at 38 tokens, or 5 windows when chunked
LONG = " ".join(["A golden retriever runs past the Eiffel Tower in Paris on a sunny day."] * 20)
CPU = torch.device("cpu")


@functools.cache
def run_config(name: str):
    """The run's composed config at tiny sizes; read only."""
    return compose([f"experiment={name}", "debug=tiny"])


@functools.cache
def initial_state(name: str) -> tuple[dict, frozenset]:
    """The run's initial state dict, and its text-adapter keys."""
    model = build_model(run_config(name))
    state = model.state_dict()
    return state, frozenset(k for k in state if model.is_adapter_key(k))


@pytest.mark.parametrize("name", [n for n in RUNS if declared(n)[0]])
def test_every_run_starts_from_its_base_backbone(name):
    """Same name and shape outside the text adapter -> bit-equal to the declared base's tensor."""
    (state, adapter), (base, _) = initial_state(name), initial_state(declared(name)[0])
    backbone = [k for k in state if k not in adapter]
    shared = [k for k in backbone if k in base and base[k].shape == state[k].shape]
    assert len(shared) == len(backbone) and any(k.startswith("g_s.") for k in shared)
    differ = [k for k in shared if not torch.equal(state[k], base[k])]
    assert not differ, f"{len(differ)} of {len(shared)} backbone tensors differ from {declared(name)[0]}'s: {differ[:3]}"


@pytest.fixture(scope="module")
def tfidf_artefact(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfidf")
    (root / "captions.json").write_text(json.dumps({"a.png": [SHORT, LONG]}), "utf-8")
    TfidfStatistics.fit(load_corpus(root / "captions.json")).save(root / "tfidf.json")
    return str(root / "tfidf.json")


def built(name: str, tfidf_artefact: str):
    """(text encoder, weighting, model with visible adapters) as the run trains them."""
    cfg = run_config(name).copy()
    for key in ("artefact", "tfidf_artefact"):
        if cfg.weighting.get(key):
            cfg.weighting[key] = tfidf_artefact
    if "Ner" in str(cfg.weighting.get("_target_")):
        pytest.importorskip(cfg.weighting.pipeline)
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # gamma = 0 at init: give the text an effect, as training does
        for n, p in model.named_parameters():
            if n.endswith("gamma"):
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return instantiate(cfg.text_encoder, _convert_="all"), build_weighting(cfg.weighting, None), model


@pytest.mark.parametrize("name", RUNS)
def test_an_image_codes_in_a_batch_as_it_does_alone(name, tfidf_artefact):
    """A short caption next to a long one (chunked: batch padding; 38 tokens: cut) gives its image
    the latent it gets alone, as evaluation codes it."""
    encoder, weighting, model = built(name, tfidf_artefact)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        alone = model(x[:1], *text_inputs(encoder, weighting, [SHORT], CPU))["y"]
        batch = model(x, *text_inputs(encoder, weighting, [SHORT, LONG], CPU))["y"][:1]
        other = model(x[:1], *text_inputs(encoder, weighting, [LONG], CPU))["y"]
    assert (alone - other).abs().max() > 1e-2  # the caption matters
    assert (alone - batch).abs().max() < 1e-5


@pytest.mark.parametrize("name, attended", [("taco_baseline", True), ("fix_mask_padding", False)])
def test_a_captions_own_pads_are_attended_where_the_recipe_says(name, attended, tfidf_artefact):
    encoder, _, model = built(name, tfidf_artefact)
    tokens, mask, _, lengths = text_inputs(encoder, None, [SHORT], CPU)
    assert tokens.shape[1] == 38 and int(lengths) == 38 and int(mask.sum()) == 5  # SOT, 3 pieces, EOT
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    noisy = tokens + torch.randn(tokens.shape) * ~mask[..., None]  # the pads' states changed
    with torch.no_grad():
        change = (model(x, tokens, mask, None, lengths)["y"] - model(x, noisy, mask, None, lengths)["y"]).abs().max()
    assert (change > 1e-3) == attended
