"""The user's answer to "download the model?" (FR-025), kept per variant in the cache directory.

The one place that reads and writes it; the service's queue and the CLI both ask it.
"""

from __future__ import annotations

from lofi_engine.shared.settings import EngineConfig
from lofi_engine.store.jsonfile import read_json, write_json_atomic


class ConsentStore:
    def __init__(self, config: EngineConfig) -> None:
        self.path = config.cache_dir / "consent.json"

    def granted(self, variant: str) -> bool:
        answers = read_json(self.path, {})
        return isinstance(answers, dict) and answers.get(variant) is True

    def record(self, variant: str, granted: bool) -> None:
        answers = read_json(self.path, {})
        if not isinstance(answers, dict):
            answers = {}
        answers[variant] = granted
        write_json_atomic(self.path, answers)
