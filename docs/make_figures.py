"""Draw docs/_static/layouts.png: where each logical index of a small descriptor lands in
memory.

Run by hand (needs matplotlib) after changing the layout rules; the PNG is committed so the
docs build does not need matplotlib.
"""

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bnnslstm as bl  # noqa: E402

EXAMPLES = [  # title, layout, size, stride, index names
    ("VECTOR size (4,)", bl.DataLayout.VECTOR, (4,), (), "i"),
    ("ROW_MAJOR_MATRIX size (cols 3, rows 2)", bl.DataLayout.ROW_MAJOR_MATRIX, (3, 2), (), "rc"),
    ("COLUMN_MAJOR_MATRIX size (rows 2, cols 3)", bl.DataLayout.COLUMN_MAJOR_MATRIX,
     (2, 3), (), "rc"),
    ("ROW_MAJOR_MATRIX padded: stride (1, 4)", bl.DataLayout.ROW_MAJOR_MATRIX,
     (3, 2), (1, 4), "rc"),
    ("SNE size (E 2, N 2, S 2): [s][n][e]", bl.DataLayout.SNE, (2, 2, 2), (), "sne"),
    ("NSE size (E 2, S 2, N 2): [n][s][e]", bl.DataLayout.NSE, (2, 2, 2), (), "nse"),
    ("FIRST_MAJOR_3D size (2, 2, 2): C order", bl.DataLayout.FIRST_MAJOR_3D, (2, 2, 2), (), "abc"),
    ("LAST_MAJOR_3D size (2, 2, 2): first index fastest", bl.DataLayout.LAST_MAJOR_3D,
     (2, 2, 2), (), "cba"),
    ("SNE every other sample: stride (1, 4, 8)", bl.DataLayout.SNE, (2, 2, 2), (1, 4, 8), "sne"),
]


def offsets(layout, size, stride):
    """{logical index: memory offset} read off the descriptor's numpy view."""
    count = 64
    buffer = np.arange(count, dtype=np.float32)
    view = bl.NDArrayDescriptor(buffer, layout, size, stride).to_numpy()
    return {index: int(view[index]) for index in itertools.product(*map(range, view.shape))}


def main():
    fig, axes = plt.subplots(len(EXAMPLES), 1, figsize=(9, 1.25 * len(EXAMPLES)))
    for ax, (title, layout, size, stride, names) in zip(axes, EXAMPLES):
        where = offsets(layout, size, stride)
        width = max(where.values()) + 1
        cmap = plt.get_cmap("tab20")
        for k, (index, offset) in enumerate(sorted(where.items())):
            ax.add_patch(plt.Rectangle((offset, 0), 1, 1, color=cmap(k % 20), alpha=0.6))
            label = "".join(f"{n}{i}" for n, i in zip(names, index))
            ax.text(offset + 0.5, 0.5, label, ha="center", va="center", fontsize=11)
        for offset in range(width):
            ax.add_patch(plt.Rectangle((offset, 0), 1, 1, fill=False, lw=0.5))
            ax.text(offset + 0.5, -0.35, str(offset), ha="center", va="center", fontsize=10,
                    color="grey")
        ax.set_xlim(0, max(max(offsets(*e[1:4]).values()) for e in EXAMPLES) + 1)
        ax.set_ylim(-0.7, 1.05)
        ax.set_title(title, fontsize=12, loc="left")
        ax.axis("off")
    fig.suptitle("memory offset (grey) of each logical index (label), per layout", fontsize=13)
    fig.tight_layout()
    out = Path(__file__).parent / "_static" / "layouts.png"
    fig.savefig(out, dpi=150)  # linked at full size from layouts.rst
    print("wrote", out)


if __name__ == "__main__":
    main()
