"""The classifier architecture shared by all the models (thesis Figure 2).

Two convolutional network layers, one max-pool and one fully connected network layer, with
ReLU, on 1x64x64 inputs (Double-MNIST; 1x84x84 for Triple-MNIST, `TRIPLE_ARCHITECTURE`) and
10 logits out. It is sized for exact MILP verification: the
ReLU count stays in the low thousands, and the max-pool input has an even size (8x8), which
other verifiers (auto_LiRPA among them) require.

Measured on this machine (60 epochs of fresh canvases, exact top-2 set accuracy on 2,000
test canvases; `docs/models.md`): a non-overlapping 4x4/stride-4 first conv plateaued near
0.78; a 6x6 second kernel gave 0.87; an overlapping 6x6/stride-4 first conv gave 0.885 /
0.924 / 0.932 with 8 / 12 / 16 channels (4,096 / 5,120 / 6,144 ReLUs). We keep 12.

Triple-MNIST keeps the first conv (12@6x6 stride 4 pad 1: 84 -> 21, exact since 84 + 2 - 6 =
80 = 4 * 20) and widens the second kernel to 7x7 (stride 2 pad 2: 21 -> 10, exact since
21 + 4 - 7 = 18 = 2 * 9; a 6x6 kernel would leave the last padded row unused). The max-pool
input, 10x10, is even; 32x5x5 = 800 features reach the FC layer. 12x21x21 + 32x10x10 = 8,492
ReLUs: more than the double models' 5,120 because the canvas has 1.72x the pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

INPUT_SHAPE = (1, 64, 64)  # Double-MNIST; `Architecture.input_shape()` in general
NUM_CLASSES = 10


@dataclass(frozen=True)
class Architecture:
    """Channel counts and kernel geometry; the spatial sizes follow from them."""

    conv1_channels: int = 12
    conv1_kernel: int = 6
    conv1_stride: int = 4
    conv1_padding: int = 1
    conv2_channels: int = 32
    conv2_kernel: int = 6
    conv2_stride: int = 2
    conv2_padding: int = 2
    pool: int = 2
    input_size: int = INPUT_SHAPE[1]  # the canvas side: 64 (Double-MNIST) or 84 (Triple-MNIST)

    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.input_size, self.input_size)

    def conv1_size(self) -> int:
        return (self.input_size + 2 * self.conv1_padding - self.conv1_kernel) // self.conv1_stride + 1

    def conv2_size(self) -> int:
        return (self.conv1_size() + 2 * self.conv2_padding - self.conv2_kernel) // self.conv2_stride + 1

    def pooled_size(self) -> int:
        return self.conv2_size() // self.pool

    def relu_count(self) -> int:
        return self.conv1_channels * self.conv1_size() ** 2 + self.conv2_channels * self.conv2_size() ** 2

    def fc_inputs(self) -> int:
        return self.conv2_channels * self.pooled_size() ** 2

    def describe(self) -> str:
        c1, c2, p = self.conv1_size(), self.conv2_size(), self.pooled_size()
        return (
            f"Conv {self.conv1_channels}@{self.conv1_kernel}x{self.conv1_kernel} "
            f"stride {self.conv1_stride} pad {self.conv1_padding} -> ReLU "
            f"({self.conv1_channels}x{c1}x{c1}) -> "
            f"Conv {self.conv2_channels}@{self.conv2_kernel}x{self.conv2_kernel} "
            f"stride {self.conv2_stride} pad {self.conv2_padding} -> ReLU "
            f"({self.conv2_channels}x{c2}x{c2}) -> MaxPool {self.pool}x{self.pool} "
            f"({self.conv2_channels}x{p}x{p}) -> FC {self.fc_inputs()}->{NUM_CLASSES}"
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


TRIPLE_ARCHITECTURE = Architecture(conv2_kernel=7, input_size=84)
ARCHITECTURES = {2: Architecture(), 3: TRIPLE_ARCHITECTURE}  # digits per canvas -> network


def build_classifier(arch: Architecture) -> nn.Sequential:
    """A fresh, randomly initialised classifier with this architecture."""
    if arch.conv2_size() % arch.pool:
        raise ValueError(f"max-pool input {arch.conv2_size()} is not a multiple of {arch.pool}")
    return nn.Sequential(
        nn.Conv2d(1, arch.conv1_channels, arch.conv1_kernel, arch.conv1_stride, arch.conv1_padding),
        nn.ReLU(),
        nn.Conv2d(arch.conv1_channels, arch.conv2_channels, arch.conv2_kernel, arch.conv2_stride, arch.conv2_padding),
        nn.ReLU(),
        nn.MaxPool2d(arch.pool),
        nn.Flatten(),
        nn.Linear(arch.fc_inputs(), NUM_CLASSES),
    )


# Recipes whose Double-MNIST network differs from the shared one. The pgd recipe widens both
# kernels to 8x8 (conv 1: stride 4 pad 2, 64 -> 16; conv 2: stride 2 pad 3, 16 -> 8): the same
# 5,120 ReLUs, 1.8x the weights. Adversarial training underfits this network (the old pgd model
# scored 0.7825 on canvases of its own training digits and 0.789 on test ones), and the wider
# kernels bought 0.0285 clean and 0.009 robust accuracy over 120 epochs of the 6x6 one (issue 18,
# docs/models.md).
RECIPE_ARCHITECTURES: dict[str, Architecture] = {
    "pgd": Architecture(conv1_kernel=8, conv1_padding=2, conv2_kernel=8, conv2_padding=3),
}


def architecture_for(recipe_name: str, digits: int = 2) -> Architecture:
    """The network a recipe trains on canvases of `digits` digits."""
    if digits == 2 and recipe_name in RECIPE_ARCHITECTURES:
        return RECIPE_ARCHITECTURES[recipe_name]
    return ARCHITECTURES[digits]
