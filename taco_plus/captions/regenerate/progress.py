"""Run counters and the tqdm progress bar (done / failed / retried / tokens)."""

from __future__ import annotations

from typing import Optional


class Progress:
    """Counts what a run did and shows it on a tqdm bar.

    Args:
        total: images this run must caption.
        enabled: draw the bar (stderr); counters work either way.
        desc: bar label.
    """

    def __init__(self, total: int, enabled: bool = True, desc: str = "captions") -> None:
        self.done = 0
        self.failed = 0
        self.retried = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_usage(self, usage: Optional[dict]) -> None:
        """Tokens billed for one response (accepted or not)."""
        if usage:
            self.prompt_tokens += usage.get("prompt_tokens", 0)
            self.completion_tokens += usage.get("completion_tokens", 0)
        self._refresh()

    def caption_done(self) -> None:
        self.done += 1
        self._refresh()
        if self._bar is not None:
            self._bar.update(1)  # redraws, postfix included

    def caption_failed(self) -> None:
        self.failed += 1
        self._refresh()
        if self._bar is not None:
            self._bar.update(1)

    def retry(self) -> None:
        self.retried += 1
        self._refresh()

    def note(self, text: str) -> None:
        """A status word shown on the bar (batch mode: "polling batch_abc ...")."""
        if self._bar is not None:
            self._bar.set_description_str(text, refresh=True)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"done={self.done} failed={self.failed} retried={self.retried} tokens={self.tokens:,}",
                refresh=False,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
