"""Networks with hand-set weights whose neurons' answers are known in advance."""
import torch
from torch import nn

RED, EDGE, DEAD = 0, 1, 2


def planted() -> nn.Module:
    """One 5×5 conv with three channels.

    RED: mean over the window of R − (G + B) / 2 — zero on any gray, positive only on reddish pixels.
    EDGE: right minus left column of the window, the same on R, G and B — a luminance vertical edge.
    DEAD: zero weights and bias −1 — never fires.
    """
    conv = nn.Conv2d(3, 3, 5, padding=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[RED, 0] = 1 / 25
        conv.weight[RED, 1] = -0.5 / 25
        conv.weight[RED, 2] = -0.5 / 25
        conv.weight[EDGE, :, :, 4] = 1 / 3
        conv.weight[EDGE, :, :, 0] = -1 / 3
        conv.bias[DEAD] = -1.0
    return nn.Sequential(conv)


class _CrashOnce(nn.Sequential):
    """The planted network (same layer names), whose process dies like a killed Ray actor on its
    third batch, the first time only (a marker file remembers)."""

    def __init__(self, marker: str):
        super().__init__(*planted())
        self.marker, self.calls = marker, 0

    def forward(self, x):
        import os

        self.calls += 1
        if self.calls == 3 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().forward(x)


def corner_classifier(size: int = 16) -> nn.Module:
    """Class 0 counts red in the top-left quarter, class 1 green in the bottom-right quarter (+ 0.5).

    Layer "0" has two 1×1 channels: red (R − G) and green (G − R); "2" flattens, "3" is the linear
    classifier that reads each channel in its own corner only.
    """
    conv = nn.Conv2d(3, 2, 1)
    linear = nn.Linear(2 * size * size, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0], conv.weight[0, 1] = 1.0, -1.0
        conv.weight[1, 0], conv.weight[1, 1] = -1.0, 1.0
        linear.weight.zero_()
        linear.bias.zero_()
        half = size // 2
        w = linear.weight.view(2, 2, size, size)
        w[0, 0, :half, :half] = 1.0
        w[1, 1, half:, half:] = 1.0
        linear.bias[1] = 0.5  # a blank image is class 1, so losing the red channel costs class 0
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), linear)
