"""Which layers of a backbone belong to which stage, for freezing schedules."""

from __future__ import annotations

import keras

from kerasimg.models.registry import BackboneSpec


def stage_layers(backbone: keras.Model, spec: BackboneSpec) -> dict[str, list[keras.Layer]]:
    """Map each stage name to its layers, in model order.

    A stage is every layer the end of that stage depends on that no earlier stage
    already holds. Walking the graph this way (through ``keras.Model`` sub-graphs)
    assigns the anonymous branch layers of Inception blocks correctly, where
    name prefixes alone could not. Layers after the last declared end go to the
    last stage.
    """
    if spec.stage_fn is not None:
        return spec.stage_fn(backbone)
    assigned: dict[str, str] = {}
    for stage, prefix in spec.stages[:-1]:
        ends = [layer for layer in backbone.layers if layer.name.startswith(prefix)]
        if not ends:
            raise ValueError(
                f"Backbone {spec.name!r} declares stage {stage!r} ending at layers named "
                f"{prefix!r}*, but the model has none."
            )
        sub_graph = keras.Model(backbone.inputs, ends[-1].output)
        for layer in sub_graph.layers:
            assigned.setdefault(layer.name, stage)
    last = spec.stages[-1][0]
    groups: dict[str, list[keras.Layer]] = {stage: [] for stage, _ in spec.stages}
    for layer in backbone.layers:
        groups[assigned.get(layer.name, last)].append(layer)
    return groups
