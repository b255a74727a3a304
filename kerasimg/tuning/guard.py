"""An oracle that remembers the settings its search started with and refuses a rerun with others.

Trials trained with other settings would not compare, so KerasTuner's reload (a rerun of the same
command resumes) first checks the settings kept in the oracle's state, naming what differs.
"""

from __future__ import annotations

from kerasimg.errors import UserError


class SettingsGuard:
    """Mix in before a ``keras_tuner.Oracle`` class; ``settings`` is a JSON-able dict."""

    settings_key = "kerasimg_settings"

    def __init__(self, *args, settings: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = dict(settings or {})

    def get_state(self):
        state = super().get_state()
        state[self.settings_key] = self.settings
        return state

    def set_state(self, state):
        saved = state.get(self.settings_key) or {}
        changed = [
            f"{k}: {saved[k]!r} then, {self.settings.get(k)!r} now"
            for k in sorted(saved)
            if saved[k] != self.settings.get(k)
        ]
        if changed:
            raise UserError(
                f"The search in {self._project_dir} was started with other settings ({'; '.join(changed)}); "
                "its trials would not compare with new ones. Rerun with the earlier settings to resume, "
                "with --overwrite to start over, or give this search its own --project NAME."
            )
        super().set_state(state)
