"""Which link a job's engine is reached through: the local engine process, or the command (``engine_command``) that
reaches an engine elsewhere. Chosen by each job's settings; the other one is stopped when the choice changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lofi_engine.service.child_link import ChildLink
from lofi_engine.service.command_link import CommandLink, LinkedProcess
from lofi_engine.shared.settings import EngineConfig
from lofi_engine.shared.errors import MODEL_NOT_FOUND, LofiError
from lofi_engine.store.catalogue import have, model_version


class EngineLink:
    def __init__(self, child: ChildLink, command: CommandLink) -> None:
        self.child, self.command = child, command
        self.active: ChildLink | CommandLink = child

    def _for(self, settings: dict[str, Any]) -> ChildLink | CommandLink:
        return self.command if settings.get("engine_command") else self.child

    def send(self, message: Any, settings: dict[str, Any], stall_timeout_sec: float) -> None:
        link = self._for(settings)
        if link is not self.active:
            self.active.stop()
            self.active = link
        link.send(message, settings, stall_timeout_sec)

    def has(self, config: EngineConfig, name: str) -> bool:
        """Whether the engine that runs jobs with ``config`` has the download ``name`` (asked of the other side, over
        its link, when the engine is elsewhere)."""
        if config.engine_command:
            try:
                return bool(self.command.answer(config.to_dict(), config.stall_timeout_sec)["available"].get(name, True))
            except LofiError:
                return True  # it cannot be asked: the job's start says why
        return have(config, name)

    def model_version(self, config: EngineConfig, backend: str) -> str:
        """What enters a track's id: the model the engine that runs it has (asked of the other side when it is
        elsewhere: ENGINE_UNAVAILABLE when it cannot be reached, MODEL_NOT_FOUND when it has no such model)."""
        if not config.engine_command:
            return model_version(config, backend)
        facts = self.command.answer(config.to_dict(), config.stall_timeout_sec)
        version = facts.get("model_versions", {}).get(backend)
        if version is None:
            raise LofiError(MODEL_NOT_FOUND, f"{facts.get('host')} has no {backend} model: {facts.get('model_errors', {}).get(backend, '')}".rstrip(": "))
        return str(version)

    def remote_model(self, config: EngineConfig, backend: str) -> tuple[str | None, bool | None]:
        """The other side's model version and whether it has ``config``'s variant, from its last answer ((None, None)
        before it answered: asking would start the link)."""
        facts = self.command.facts
        if facts is None:
            return None, None
        return facts.get("model_versions", {}).get(backend), bool(facts.get("available", {}).get(config.variant))

    def check(self, config: EngineConfig) -> dict[str, Any]:
        """The other side's handshake, asked now (the link is started for it): ENGINE_UNAVAILABLE or
        ENGINE_VERSION_MISMATCH when it cannot be had."""
        return self.command.answer(config.to_dict(), config.stall_timeout_sec)

    def host(self, config: EngineConfig) -> str | None:
        """The machine whose engine runs jobs with ``config``, when it is not this one (known once its link answered)."""
        facts = self.remote(config)
        return str(facts["host"]) if facts else None

    def over_command(self, process: Any) -> bool:
        """Whether ``process`` was the engine command's (a link that can drop)."""
        return isinstance(process, LinkedProcess)

    def remote(self, config: EngineConfig) -> dict[str, Any] | None:
        """The other side's last handshake (host, version, providers, what it has) when ``config``'s jobs go over a
        command (None before its first answer)."""
        if not config.engine_command or self.command.facts is None:
            return None
        return {**self.command.facts, "link_bytes": self.command.traffic()}

    @property
    def python(self) -> str | None:
        return self.child.python

    @python.setter
    def python(self, value: str | None) -> None:
        self.child.python = value

    @property
    def log_path(self) -> Path:
        return self.child.log_path

    @property
    def pid(self) -> int | None:
        return self.active.pid

    @property
    def alive(self) -> bool:
        return self.active.alive

    def cancel_running(self) -> None:
        self.active.cancel_running()

    def stop(self, timeout: float = 5.0) -> None:
        self.child.stop(timeout)
        self.command.stop(timeout)

    def crashed(self, process: Any) -> bool:
        return self.child.crashed(process) or self.command.crashed(process)

    def stalled(self, process: Any) -> bool:
        return self.child.stalled(process) or self.command.stalled(process)

    def failure(self, process: Any) -> tuple[str, str] | None:
        """Why a command's link never worked (its code and message); None for an engine that died after starting."""
        return self.command.failure(process) if isinstance(process, LinkedProcess) else None
