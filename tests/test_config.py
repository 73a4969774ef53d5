"""Hydra switchboard: every option composes and resolves, schemas reject misspellings."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from taco_plus.schemas import CONFIG_DIR, compose, schema, to_container

GROUPS = ("model", "text_encoder", "attention", "weighting", "captions", "data", "loss", "optim", "trainer")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


EXPERIMENTS = _options("experiment")
# Row i picks option i (cyclically) of every group: a few compositions cover every option,
# each time combined with options of the other groups.
ROWS = max(len(_options(g)) for g in GROUPS)


def test_every_group_has_options_and_the_paper_defaults():
    for group in GROUPS:
        assert _options(group), f"configs/{group}/ is empty"
    cfg = compose()
    assert OmegaConf.select(cfg, "model._target_") == "taco_plus.models.TACO"
    assert (cfg.model.N, cfg.model.M, list(cfg.model.slice_ch)) == (192, 320, [16, 16, 32, 64, 192])
    assert cfg.loss.k_p == 3.5 and cfg.loss.k_j == 0.0025 and cfg.loss.joint.beta == 40.0
    assert cfg.optim.optimizer.lr == 1e-4 and cfg.optim.aux_optimizer.lr == 1e-3
    assert list(cfg.optim.scheduler.milestones) == [45, 48] and cfg.optim.clip_max_norm == 1.0
    assert cfg.data.crop_size == 256 and cfg.data.batch_size == 8 and cfg.trainer.epochs == 50


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment):
    cfg = compose([f"experiment={experiment}"])
    resolved = to_container(cfg)
    for group in GROUPS:
        assert group in resolved
    model = resolved["model"]
    for key in ("injector", "extractor", "caption_summary"):
        assert model.get(f"{key}_attention", model.get(key)) == resolved["attention"][key]


@pytest.mark.parametrize("row", range(ROWS))
def test_every_option_composes_with_other_groups(row):
    picks = {g: _options(g)[row % len(_options(g))] for g in GROUPS}
    overrides = [f"{g}={o}" for g, o in picks.items()]
    overrides += ["data.image_dir=somewhere"] if picks["data"] == "folder" else []
    overrides += ["captions.path=somewhere"] if picks["captions"] == "file" else []
    resolved = to_container(compose(overrides))
    for group in GROUPS:
        if group not in ("attention", "optim"):
            assert "_target_" in resolved[group], f"{group}={picks[group]} instantiates nothing"


def test_text_dim_follows_the_text_encoder():
    assert compose(["text_encoder=tiny"]).model.text_dim == 64
    assert compose(["text_encoder=clip_vit_b32", "model=tiny"]).model.text_dim == 512


def test_data_reads_the_captions_group():
    cfg = compose(["captions=kodak_ofa", "data=kodak"])
    assert to_container(cfg)["data"]["captions"] == to_container(cfg)["captions"]


@pytest.mark.parametrize("override", ["loss.lmdba=0.01", "model.n=64", "trainer.max_step=3", "optim.lr=1e-3"])
def test_misspelt_override_fails_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose([override])


def test_misspelt_key_in_an_option_file_fails(tmp_path):
    (tmp_path / "loss").mkdir()
    (tmp_path / "loss" / "typo.yaml").write_text(
        "defaults:\n  - /schema/taco_plus.losses.TacoLoss@_here_\n  - _self_\n\nlmdba: 0.01\n")
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "badtype.yaml").write_text(
        "defaults:\n  - /schema/taco_plus.train.Trainer@_here_\n  - _self_\n\nepochs: many\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    with pytest.raises(ConfigCompositionException, match="lmdba"):
        compose([search, "loss=typo"])
    with pytest.raises(ConfigCompositionException, match="epochs"):
        compose([search, "trainer=badtype"])
    assert compose([search]).loss.lmbda == 0.0016  # the search path itself is harmless


def test_experiment_value_overrides_win_over_the_experiment():
    cfg = compose(["experiment=taco_baseline", "loss.lmbda=0.0004", "data=folder", "data.image_dir=x"])
    assert cfg.loss.lmbda == 0.0004 and cfg.data.image_dir == "x" and cfg.data.crop_size == 256


@pytest.mark.parametrize("group", GROUPS)
def test_option_files_hold_only_what_differs_from_the_defaults(group):
    """An option naming a schema (``/schema/<path>``: a constructor's signature, or a dataclass of
    taco_plus.schemas) sets only keys of that schema, each to a value other than its default."""
    for option in _options(group):
        node = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")
        entries = [e for e in node.pop("defaults") if isinstance(e, str) and e.startswith("/schema/")]
        if not entries or not entries[0].endswith("@_here_"):
            continue  # an option built on another option (linformer, taco_untrained)
        defaults = OmegaConf.to_container(OmegaConf.structured(schema(entries[0][len("/schema/"):-len("@_here_")])))
        for key, value in OmegaConf.to_container(node).items():
            assert key in defaults and value != defaults[key], f"{group}/{option}.yaml: {key}"


@pytest.mark.parametrize("override, ok", [("model.N=64", True), ("model.scale_table_levels=64", True),
                                          ("text_encoder.pad=zero", True), ("data.limit=3", True),
                                          ("loss.joint.beta=20.5", True), ("trainer.seed=3", True),
                                          ("trainer.test_set_selection.metric=bpp", True),
                                          ("text_encoder.cache_dir=x", False), ("loss.joint.clip_model=x", False),
                                          ("data.crop_size=big", False), ("trainer.stop_signals=SIGINT", False)])
def test_any_constructor_argument_can_be_set_and_nothing_else(override, ok):
    """Keyword-only arguments (code's, not configs') are not keys; the types are the annotations'."""
    if not ok:
        with pytest.raises(ConfigCompositionException):
            compose([override])
        return
    key, value = override.split("=")
    assert str(OmegaConf.select(compose([override]), key)) == value


def test_schemas_travel_to_another_process():
    """hydra-submitit-launcher pickles Hydra's state (the ConfigStore, its lazy schema group) and
    the job's config: the schemas built from signatures unpickle in a fresh process."""
    import subprocess
    import sys

    from hydra.core.singleton import Singleton

    cloudpickle = pytest.importorskip("cloudpickle")  # submitit's pickler

    from tests.conftest import REPO_ROOT

    cfg = compose(["experiment=weighting_tfidf"])
    code = ("import pickle, sys; from hydra.core.singleton import Singleton; state, cfg = pickle.load(sys.stdin.buffer); "
            "Singleton.set_state(state); print(type(cfg.weighting).__name__, cfg.weighting._metadata.object_type.__name__,"
            " cfg.trainer.epochs)")
    out = subprocess.run([sys.executable, "-c", code], input=cloudpickle.dumps((Singleton.get_state(), cfg)),
                         capture_output=True, cwd=REPO_ROOT, env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0 and out.stdout.decode().split() == ["DictConfig", "TfidfWeighting", "50"], out.stderr[-2000:]
