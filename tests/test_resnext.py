"""ResNeXt: the fast grouped convolution, torchvision's parameter counts, and checkpoint ports."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasimg.errors import UserError
from kerasimg.models.grouped_conv import GroupedConv2D
from kerasimg.models.resnext import ResNeXt
from kerasimg.models.torch_port import load_torch_checkpoint


def per_group_conv(x, kernel, groups: int, strides: int, padding: str):
    """The definition of a grouped convolution (Keras's ``Conv2D(groups=)`` kernel layout): each group's
    input channels convolved with its own filters. Spelled out, because TensorFlow computes
    ``Conv2D(groups=)``'s gradient only where oneDNN takes it (not on every CPU)."""
    inputs = tf.split(x, groups, axis=-1)
    kernels = tf.split(kernel, groups, axis=-1)
    return tf.concat([tf.nn.conv2d(i, k, strides, padding.upper()) for i, k in zip(inputs, kernels)], axis=-1)


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid"), (1, "valid")])
def test_grouped_conv_equals_keras_conv2d_groups_in_value_and_gradient(strides, padding):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 9, 9, 16)).astype("float32"))
    ours = GroupedConv2D(8, 3, strides=strides, padding=padding, groups=4)
    reference = keras.layers.Conv2D(8, 3, strides=strides, padding=padding, groups=4, use_bias=False)
    ours.build(x.shape)
    reference.build(x.shape)
    assert ours.kernel.shape == reference.kernel.shape
    ours.kernel.assign(reference.kernel)
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-4)

    def outputs_and_gradients(apply):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = apply(x)
            loss = tf.reduce_sum(y * y)
        return (y, *tape.gradient(loss, [x, ours.kernel]))

    grads = [
        outputs_and_gradients(ours),
        outputs_and_gradients(lambda v: per_group_conv(v, ours.kernel, 4, strides, padding)),
    ]
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-4)
    assert ours.compute_output_shape(x.shape) == tuple(grads[0][0].shape)


def test_grouped_conv_round_trips_through_a_keras_file(tmp_path):
    inputs = keras.Input((8, 8, 8))
    model = keras.Model(inputs, GroupedConv2D(8, 3, padding="same", groups=2, use_bias=True)(inputs))
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 8)).astype("float32")
    model.save(tmp_path / "g.keras")
    restored = keras.saving.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(restored(x), model(x), rtol=1e-6)


@pytest.mark.parametrize(
    "args, torchvision_count", [(((3, 4, 6, 3), 32, 4), 25_028_904), (((3, 4, 23, 3), 32, 8), 88_791_336)]
)
def test_parameter_counts_equal_torchvisions(args, torchvision_count):
    model = ResNeXt(*args, input_shape=(32, 32, 3), include_top=True)
    # torchvision counts parameters; BatchNorm running statistics are buffers there.
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == torchvision_count


def torch_resnext(depths=(3, 4, 6, 3), groups=32, width_per_group=4, classes=1000):
    """A reference ResNeXt with torchvision's module layout and parameter names."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            width = int(planes * width_per_group / 64) * groups
            self.conv1, self.bn1 = nn.Conv2d(inplanes, width, 1, bias=False), nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3, self.bn3 = nn.Conv2d(width, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
            self.downsample = None
            if stride != 1 or inplanes != planes * 4:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
                )

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.bn2(self.conv2(y)))
            return torch.relu(self.bn3(self.conv3(y)) + identity)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for i, (depth, planes) in enumerate(zip(depths, (64, 128, 256, 512))):
                blocks = []
                for b in range(depth):
                    blocks.append(Bottleneck(inplanes, planes, 2 if i > 0 and b == 0 else 1))
                    inplanes = planes * 4
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.fc = nn.Linear(2048, classes)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for i in range(1, 5):
                x = getattr(self, f"layer{i}")(x)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # random BatchNorm statistics too, so the port of every buffer is checked
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.normal_(1, 0.1)
                module.bias.normal_(0, 0.1)
    return net.eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_torchvision_checkpoint_ports_with_equal_logits(tmp_path, suffix):
    torch = pytest.importorskip("torch")
    net = torch_resnext()
    path = tmp_path / f"resnext50{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.save(net.state_dict(), path)
    model = ResNeXt(input_shape=(64, 64, 3), include_top=True)
    load_torch_checkpoint(model, path)
    images = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    actual = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.max(np.abs(actual - expected)) < 1e-4


def test_a_checkpoint_that_does_not_fit_names_the_tensors(tmp_path):
    from safetensors.numpy import save_file

    model = ResNeXt((1, 1, 1, 1), 2, 4, input_shape=(32, 32, 3))
    state = {
        "conv1.weight": np.zeros((64, 3, 7, 7), "float32"),
        "bn1.weight": np.zeros(64, "float32"),
        "layer1.0.conv1.weight": np.zeros((7, 64, 1, 1), "float32"),
        "extra.thing": np.zeros(1, "float32"),
    }
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UserError) as caught:
        load_torch_checkpoint(model, tmp_path / "bad.safetensors")
    message = str(caught.value)
    assert "bn1.bias missing" in message
    assert "layer1.0.conv1.weight has shape (1, 1, 64, 7)" in message
    assert "extra.thing matches no Keras layer" in message
