"""Runs the Long-CLIP reference code (github.com/beichenzbc/Long-CLIP) on a seeded random-init
Long-CLIP and writes what it computes: the golden file that tests/test_text_longclip.py checks
without the reference, and the helpers its side-by-side tests use when the reference is there.

    python tests/longclip_golden.py /path/to/Long-CLIP [--out tests/fixtures/longclip_tiny_golden.pt]

Nothing of the reference is copied here: its ``model`` package is imported from the path given.
The model is ``taco-tiny-longclip`` (taco_plus/text/model_configs) in the release format
(``positional_embedding`` + ``positional_embedding_res``, fp16 weights as the release files hold
them); rows of the token embedding that no golden caption uses are zero, so that the file
stores only the used ones.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "taco_plus" / "text" / "model_configs" / "taco-tiny-longclip.json"
GOLDEN = REPO / "tests" / "fixtures" / "longclip_tiny_golden.pt"
# Architectures of the released checkpoints, as the reference's build_model infers them from
# longclip-B.pt / longclip-L.pt (heads = width / 64): embed_dim, image size, vision layers,
# vision width, patch, text width, text layers.
RELEASE_DIMS = {"LongCLIP-B": (512, 224, 12, 768, 16, 512, 12), "LongCLIP-L": (768, 224, 24, 1024, 14, 768, 12)}

_SCENE = ("A narrow cobblestone street in an old European town on a rainy evening, lined with three-storey houses "
          "painted ochre, pale blue and terracotta, their wooden shutters half open; warm light spills from a "
          "bakery window onto the wet stones, where a woman in a yellow raincoat holds a red umbrella and a small "
          "dog on a leash, while two cyclists pass a green newsstand covered with magazines and a chalkboard menu")
# Long captions (> 77 tokens) in the style of the regenerated caption sets, with the punctuation,
# digits, apostrophes and accents that BPE cleaning touches. The first two are also encoded.
CAPTIONS = [
    _SCENE + ".",
    " ".join([_SCENE + "."] * 3),  # > 248 tokens: cut, end-of-text kept
    "The photo shows a 1960s red Vespa scooter parked beside a café's blue door; it's 7:45 p.m., the sky is "
    "violet, and a hand-painted sign reads 'OPEN - espresso 2,50 EUR'. Behind it, an elderly man wearing a "
    "flat cap reads Le Monde on a bench, next to potted geraniums, a bicycle with a wicker basket, and a "
    "tabby cat that naps on the warm windowsill above a row of empty wine bottles.",
    "Close-up of a Kodak-style test image: a macaw's head with scarlet, yellow and cobalt feathers against a "
    "blurred green background; fine barbs are visible around the eye, which is pale cream with a black pupil, "
    "and the curved beak is ivory on top and charcoal below. Lighting comes from the upper left, leaving a "
    "soft shadow under the beak. There is no text in the image, no watermark, and the framing is tight.",
    "An aerial view (taken by a drone at roughly 120 m) of a harbour at low tide: 14 fishing boats rest on "
    "the mud, ropes slack; a lighthouse with white and red bands stands on the breakwater; stacks of lobster "
    "traps, orange buoys and blue nets line the quay; three people in waders walk toward a rowing boat; "
    "gulls circle above, and far away, a ferry leaves a long white wake across the grey-green sea.",
    "Interior of a university library reading room with long oak tables, green banker's lamps, and tall "
    "arched windows; students sit with laptops, notebooks and stacks of books, one asleep on her folded "
    "arms. Shelves rise two floors, with a wrought-iron gallery and a spiral staircase in the corner; a "
    "clock reads ten past three, and dust motes float in the slanting afternoon sunlight.",
]
STATE_CAPTIONS = 2  # the first captions, whose states and embeddings the golden holds


def import_reference(path: str | Path) -> types.ModuleType:
    """The reference's ``model`` package (``longclip.load``, ``longclip.tokenize``,
    ``model_longclip.CLIP``) imported from a checkout, under its own module name."""
    root = Path(path).resolve() / "model"
    loaded = sys.modules.get("longclip_reference")
    if loaded is not None and Path(loaded.__file__).parent == root:
        return loaded
    if not (root / "longclip.py").is_file():
        raise FileNotFoundError(f"{path} is not a Long-CLIP checkout (no model/longclip.py)")
    try:
        import pkg_resources  # noqa: F401  # longclip.py imports `packaging` from it
    except ImportError:  # setuptools >= 81 has no pkg_resources: the module it reads is `packaging`
        import packaging.version

        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)
    spec = importlib.util.spec_from_file_location("longclip_reference", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["longclip_reference"] = module
    spec.loader.exec_module(module)
    return module


def dims_of(config: dict) -> tuple[int, ...]:
    """An open_clip config's dims in :data:`RELEASE_DIMS`' order."""
    v, t = config["vision_cfg"], config["text_cfg"]
    return config["embed_dim"], v["image_size"], v["layers"], v["width"], v["patch_size"], t["width"], t["layers"]


def reference_clip(ref: types.ModuleType, dims: tuple[int, ...]) -> torch.nn.Module:
    """The reference's ``CLIP`` as its ``build_model`` builds a released checkpoint (heads = width / 64)."""
    embed, image, v_layers, v_width, patch, width, layers = dims
    return ref.model_longclip.CLIP(embed, image, v_layers, v_width, patch, 248, 49408, width, width // 64, layers,
                                   load_from_clip=False)


def random_release(ref: types.ModuleType, dims: tuple[int, ...], seed: int, used_ids=None) -> dict:
    """A seeded random Long-CLIP state dict in the release format. Every tensor is perturbed
    (biases, norms and both positional tables non-trivial) and rounded to fp16 as released;
    token rows outside ``used_ids`` (when given) are zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = reference_clip(ref, dims)
    state = {}
    for key, value in model.state_dict().items():
        if key == "positional_embedding_res":  # the reference leaves it uninitialised (torch.empty)
            value = torch.zeros_like(value)
        value = value + 0.02 * torch.randn(value.shape, generator=gen)
        state[key] = value.half()
    if used_ids is not None:
        keep = torch.zeros(state["token_embedding.weight"].shape[0], dtype=torch.bool)
        keep[torch.as_tensor(sorted(used_ids))] = True
        state["token_embedding.weight"][~keep] = 0
    return state


def pad_positions(ids: torch.Tensor) -> torch.Tensor:
    """(N, L) bool: the positions after each row's end-of-text (the highest id, as the reference finds it)."""
    return torch.arange(ids.shape[1]) > ids.argmax(dim=-1, keepdim=True)


@torch.no_grad()
def reference_outputs(ref: types.ModuleType, checkpoint: Path, captions: list[str], pixels: torch.Tensor) -> dict:
    """What the reference computes from a checkpoint file: token ids (``longclip.tokenize``,
    truncated), per-token states (``encode_text_full``), text and image embeddings, and the
    states under the pad rule (the same modules with padding keys hidden from every query)."""
    model, _ = ref.load(str(checkpoint), device="cpu")
    ids = ref.tokenize(captions, truncate=True)  # (N, 248), zero-padded
    states = model.encode_text_full(ids)  # (N, 248, width)
    blocks = model.transformer.resblocks
    causal, heads = blocks[0].attn_mask, blocks[0].attn.num_heads
    pad = torch.zeros(ids.shape).masked_fill(pad_positions(ids), float("-inf"))  # (N, 248)
    for block in blocks:  # (N * heads, 248, 248), as nn.MultiheadAttention takes per-sequence masks
        block.attn_mask = (causal + pad[:, None, :]).repeat_interleave(heads, dim=0)
    masked = model.encode_text_full(ids)
    for block in blocks:
        block.attn_mask = causal
    return dict(ids=ids.long(), text_states=states, masked_states=masked, text_embeddings=model.encode_text(ids),
                image_embeddings=model.encode_image(pixels))


def release_shapes(ref: types.ModuleType) -> dict[str, dict[str, list[int]]]:
    """Key -> shape of the reference model of each released checkpoint (built on the meta device)."""
    with torch.device("meta"):
        return {name: {k: list(v.shape) for k, v in reference_clip(ref, dims).state_dict().items()}
                for name, dims in RELEASE_DIMS.items()}


def provenance(path: Path, commit: str | None = None) -> dict[str, str]:
    """The reference's commit (``git rev-parse``, or as given) and the sha256 of the files run."""
    files = ("model/longclip.py", "model/model_longclip.py", "model/simple_tokenizer.py")
    out = {f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in files}
    git = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    out["commit"] = commit or (git.stdout.strip() if git.returncode == 0 else "unknown")
    return out


def make_golden(reference: Path, seed: int = 0, commit: str | None = None) -> dict:
    ref = import_reference(reference)
    config = json.loads(TINY_CONFIG.read_text())
    used = {int(i) for row in ref.tokenize(CAPTIONS[:STATE_CAPTIONS], truncate=True) for i in row}
    state = random_release(ref, dims_of(config), seed, used)
    size = config["vision_cfg"]["image_size"]  # preprocessed pixels, fp16 values (stored as fp16)
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed + 1)).half().float()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "longclip-tiny.pt"
        torch.save(state, path)
        out = reference_outputs(ref, path, CAPTIONS[:STATE_CAPTIONS], pixels)
    ids = ref.tokenize(CAPTIONS, truncate=True).long()
    pads = pad_positions(out["ids"])  # real positions: plain states; padding: under the pad rule
    token_ids = torch.tensor(sorted(used))
    table = state.pop("token_embedding.weight")
    return dict(
        model_name="taco-tiny-longclip", seed=seed, reference=provenance(Path(reference), commit),
        state_dict=state, token_ids=token_ids, token_rows=table[token_ids],  # the rest of the table is zero
        captions=CAPTIONS, ids=ids.to(torch.int32), pixels=pixels.half(),
        # (R, width) and (P, width): the states of the real and of the pad positions, row-major
        text_states=out["text_states"][~pads], pad_states=out["masked_states"][pads],
        text_embeddings=out["text_embeddings"], image_embeddings=out["image_embeddings"],
        release_shapes=release_shapes(ref),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path, help="a checkout of github.com/beichenzbc/Long-CLIP")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commit", default=None, help="the reference's commit, when the path is not a git checkout")
    args = parser.parse_args(argv)
    golden = make_golden(args.reference, args.seed, args.commit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(golden, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
