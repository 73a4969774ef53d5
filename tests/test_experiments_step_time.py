"""The training-step measurement behind the cost estimates, on toy sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taco_plus.experiments.step_time import LONG_CAPTION_WORDS, PROFILES, _captions, coco_min_side_fraction, measure_profile

from tests.registry_data import write_source_data

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
TOY = ("model=tiny", "text_encoder=tiny", "loss=taco_untrained")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # toy convolutions: threads only contend on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def measured():
    """name -> (result, log lines), each profile measured once on toy sizes."""
    cache = {}

    def get(name):
        if name not in cache:
            logged = []
            cache[name] = measure_profile(PROFILES[name], batch_size=2, crop=64, precision="fp32", repeat=1,
                                          warmup=1, log=logged.append, extra=TOY), logged
        return cache[name]

    return get


@pytest.mark.parametrize("name, tokens", [("full_38", 38), ("linformer_chunked_long", None)])
def test_measure_profile_runs_the_real_training_step(measured, name, tokens):
    r, logged = measured(name)
    assert r["flops_per_step"] > 1e8 and r["median_step_s"] > 0 and r["median_cpu_s"] > 0
    assert len(r["step_s"]) == len(r["cpu_s"]) == 1 and len(logged) == 1
    if tokens is not None:
        assert r["layout_tokens"] == tokens
    else:  # 170-word captions, chunked: every word reaches the adapter
        assert r["layout_tokens"] > 2 * 77
    assert r["overrides"] == list(PROFILES[name].overrides)


def test_adapter_only_trains_fewer_parameters(measured):
    full, adapter = measured("full_38")[0], measured("adapter_only_38")[0]
    assert 0 < adapter["trainable_params"] < full["trainable_params"] / 2


def test_captions_and_dataset_share(tmp_path):
    short, long = _captions("short", 3), _captions("long", 3)
    assert len(short) == 3 and all(len(c.split()) < 80 for c in short)
    assert all(len(c.split()) == LONG_CAPTION_WORDS for c in long) and len(set(long)) == 3
    share = coco_min_side_fraction([write_source_data(tmp_path) / "coco_mini" / "annotations" / "captions_train2017.json"])
    assert share["images"] == 2 and share["kept"] == 1 and share["fraction"] == 0.5
    assert coco_min_side_fraction([FIXTURES / "nowhere.json"]) is None
