"""Published facts for choosing a backbone: ImageNet top-1 with its source, and when to pick it.

Kept apart from the registry because these are other people's measurements, quoted, not
anything the code relies on: ``python -m kerasimg.models list`` prints them beside the
parameters and FLOPs it counts itself, and the README's "Choosing a backbone" table
shows the same rows. A backbone without an entry shows none (``hub:`` presets, the
compound-scaled EfficientNets, ``small_cnn``).
"""

from __future__ import annotations

from dataclasses import dataclass

KERAS_TABLE = "keras.io/api/applications"
MOBILENETV3_DOC = "keras.applications.MobileNetV3 docstring"
TORCHVISION = "torchvision IMAGENET1K_V1"
DINOV2_PAPER = "Oquab et al. 2023, Table 4, linear probe"


@dataclass(frozen=True)
class Published:
    top1: float | None  # percent, single 224-ish centre crop unless the source says otherwise
    source: str
    pick_when: str


CATALOGUE: dict[str, Published] = {
    "resnet50": Published(74.9, KERAS_TABLE, "the seed's reference; well understood, caffe preprocessing"),
    "densenet201": Published(77.3, KERAS_TABLE, "the seed's best CNN; slow for its accuracy"),
    "inception_resnet_v2": Published(80.3, KERAS_TABLE, "the seed's 299 px model"),
    **{
        f"efficientnet_b{i}": Published(top1, KERAS_TABLE, pick)
        for i, (top1, pick) in enumerate(
            [
                (77.1, "a small, accurate CNN at 224 px"),
                (79.1, "B0 at 240 px"),
                (80.1, "B0 scaled to 260 px"),
                (81.6, "300 px, if you have the time"),
                (82.9, "380 px; slow on CPU"),
                (83.6, "456 px; GPU only"),
                (84.0, "528 px; GPU only"),
                (84.3, "600 px; GPU only"),
            ]
        )
    },
    "resnext50_32x4d": Published(
        77.6, TORCHVISION, "ResNet-50's cost, grouped convolutions, torchvision weights"
    ),
    "resnext101_32x8d": Published(79.3, TORCHVISION, "a bigger ResNeXt; four times ResNeXt-50's compute"),
    "vit_tiny16": Published(None, "", "a ViT to train from scratch on small data"),
    "vit_small16": Published(None, "", "a mid-size ViT from scratch"),
    "vit_base16": Published(None, "", "the seed's ViT with keras-hub's ImageNet preset (the row to beat)"),
    "small_cnn": Published(None, "", "the offline demo; no pretrained weights"),
    "convnext_tiny": Published(81.3, KERAS_TABLE, "a modern CNN at ResNet-50's size; strong fine-tuning"),
    "convnext_small": Published(82.3, KERAS_TABLE, "ConvNeXt-T with a deeper third stage"),
    "convnext_base": Published(85.3, KERAS_TABLE, "more accuracy than T or S at 3x ConvNeXt-T's size; GPU"),
    "convnext_large": Published(86.3, KERAS_TABLE, "GPU, lots of memory"),
    "convnext_xlarge": Published(86.7, KERAS_TABLE, "the largest; 350 M parameters"),
    "efficientnetv2_b0": Published(78.7, KERAS_TABLE, "EfficientNet-B0's size, faster to train"),
    "efficientnetv2_b1": Published(79.8, KERAS_TABLE, "V2-B0 at 240 px"),
    "efficientnetv2_b2": Published(80.5, KERAS_TABLE, "V2-B0 scaled to 260 px"),
    "efficientnetv2_b3": Published(82.0, KERAS_TABLE, "300 px, best of the small V2s"),
    "efficientnetv2_s": Published(83.9, KERAS_TABLE, "accuracy per training hour; 384 px by default"),
    "efficientnetv2_m": Published(85.3, KERAS_TABLE, "480 px; GPU"),
    "efficientnetv2_l": Published(85.7, KERAS_TABLE, "480 px; GPU, lots of memory"),
    "mobilenetv3_small": Published(68.1, MOBILENETV3_DOC, "phones and microcontroller-class CPUs"),
    "mobilenetv3_large": Published(
        75.6, MOBILENETV3_DOC, "the edge choice: ResNet-50's top-1 for a small fraction of its FLOPs"
    ),
    "dinov2_small14": Published(81.1, DINOV2_PAPER, "frozen features that win linear probes; few labels"),
    "dinov2_base14": Published(84.5, DINOV2_PAPER, "stronger frozen features; ViT-B cost"),
    "dinov2_large14": Published(86.3, DINOV2_PAPER, "the best frozen features here; GPU"),
}


def published(name: str) -> Published:
    """The quoted facts for ``name``, or an empty entry (a ``hub:`` preset, a scaled EfficientNet)."""
    return CATALOGUE.get(name, Published(None, "", ""))
