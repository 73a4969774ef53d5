"""Where pretrained CLIP weights can come from without waiting on the network.

open_clip asks the Hugging Face hub for a tag's weights even when a previous download
sits in the local cache, and offline it retries for ~46 s before failing. This module
finds cached weights directly (``try_to_load_from_cache`` never touches the network),
decides up front whether a download can work (``HF_HUB_OFFLINE``, read at call time,
then a short TCP probe of the hub or the HTTPS proxy), and writes the message that
says what to download and where to put it.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

# open_clip's preference when a folder holds several checkpoints.
PREFERRED_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)
HUB_PROBE_TIMEOUT_S = 3.0


class ClipWeightsUnavailableError(RuntimeError):
    """Pretrained CLIP weights are not on this machine and cannot be downloaded."""


def split_hub(hub: str):
    """open_clip's ``hf_hub`` field: ``"org/repo/"`` (default file) or ``"org/repo/file"``."""
    return (hub[:-1], "") if hub.endswith("/") else os.path.split(hub)


def hub_weight_names(filename: str) -> list:
    """The files open_clip tries, in order, for a hub repo's weights."""
    filename = filename or "open_clip_pytorch_model.bin"
    if filename == "open_clip_pytorch_model.bin":
        return ["open_clip_model.safetensors", filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def cached_tag_file(cfg: Dict[str, Any], cache_dir: Optional[str]) -> Optional[str]:
    """A tag's weights file if a previous download left it in a local cache."""
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = split_hub(hub)
        for name in hub_weight_names(filename):
            path = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    url = cfg.get("url", "")
    if url:
        path = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(url)
        if path.is_file():
            return str(path)
    return None


def cached_hub_snapshot(repo: str, cache_dir: Optional[str]) -> Optional[Path]:
    """The cached snapshot folder of a hub repo holding its config and weights."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, "open_clip_config.json", cache_dir=cache_dir)
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    return snapshot if any((snapshot / n).is_file() for n in PREFERRED_WEIGHTS) else None


def download_hint(model_name: str, tag: Optional[str], repo: str, files: Sequence[str],
                  quick_gelu: bool = False) -> str:
    """What to download from a hub repo, and where to put it.

    Args:
        model_name: the architecture (or ``hf-hub:`` id) asked for.
        tag: the open_clip tag asked for, None for an ``hf-hub:`` id.
        repo: the hub repo holding the weights.
        files: weight file names open_clip accepts, preferred first.
        quick_gelu: whether the weights need QuickGELU (a bare file loses the tag's flag).
    """
    from huggingface_hub import constants

    file = files[0]
    names = f"`{file}`" + "".join(f" (or `{alt}`)" for alt in files[1:])
    asked = f"model_name={model_name!r}, pretrained={tag!r}" if tag else f"model_name={model_name!r}"
    file_note = "open_clip_config.json beside it" + (", or add quick_gelu=True" if quick_gelu else "")
    keep = f"pretrained={tag!r}" if tag else f"model_name={model_name!r}"
    if tag:
        options = [
            f"pass the folder: pretrained='/path/to/clip' (or 'local-dir:/path/to/clip'),",
            f"pass the file: pretrained='/path/to/clip/{file}' (with {file_note}), or",
        ]
    else:
        options = ["pass the folder: model_name='local-dir:/path/to/clip', or"]
    options.append(
        f"download without --local-dir into the Hugging Face cache, copy "
        f"{cache_path(repo, constants.HF_HUB_CACHE)} to the same place here and keep {keep}."
    )
    return "\n".join(
        [
            f"CLIP weights for {asked} are not on this machine and cannot be downloaded now.",
            f"Download {names} and `open_clip_config.json` from the Hugging Face hub repo `{repo}` "
            f"(https://huggingface.co/{repo}) on a machine with internet access, e.g.",
            f"    hf download {repo} {file} open_clip_config.json --local-dir /path/to/clip",
            "then either",
            *(f"  * {option}" for option in options),
        ]
    )


def url_download_hint(url: str, cache_dir: Optional[str], quick_gelu: bool = False) -> str:
    """What to download for a tag that open_clip fetches from a plain URL."""
    target = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(url)
    return (
        f"CLIP weights are not on this machine and cannot be downloaded now.\n"
        f"Download {url} and either pass its path as pretrained='/path/to/{target.name}'"
        f"{' with quick_gelu=True' if quick_gelu else ''}, or save it as {target}."
    )


def cache_path(repo: str, hub_cache: str) -> str:
    """Where the Hugging Face cache keeps a repo (``models--org--name``)."""
    return os.path.join(hub_cache, "models--" + repo.replace("/", "--"))


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, not at import time)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return env in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def host_reachable(url: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (or the HTTPS proxy) opens within ``timeout``."""
    proxy = urllib.request.getproxies().get("https")
    target = urllib.parse.urlsplit(proxy or url)
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    if not host:
        return False
    ok = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    # A thread bounds the DNS lookup too, which socket timeouts do not cover.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def hub_url(repo: str) -> str:
    """A hub repo's address on the configured endpoint (``HF_ENDPOINT``)."""
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/{repo}"


def require_online(hint: str, url: str) -> None:
    """Raise :class:`ClipWeightsUnavailableError` with ``hint`` unless ``url`` can be downloaded from."""
    if hub_offline():
        raise ClipWeightsUnavailableError(f"HF_HUB_OFFLINE is set.\n{hint}")
    if not host_reachable(url):
        raise ClipWeightsUnavailableError(f"{urllib.parse.urlsplit(url).hostname} is unreachable.\n{hint}")
