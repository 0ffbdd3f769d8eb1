"""``bnnslstm demo`` (or ``python -m bnnslstm demo``): train a character-level LSTM with this
library alone. ``bnnslstm config`` prints how bnnslstm was built and what it runs on
(``bnnslstm.show_config()``), ``bnnslstm --version`` its version.

The task is next-character prediction on the first four chapters of Lewis Carroll's
*Alice's Adventures in Wonderland* (1865, public domain; ``alice.txt`` beside this file
says where the text comes from). The model trains on chapters I to III and never sees
chapter IV: the loss on chapter IV, reported after every epoch next to the training loss,
shows whether it learns English spelling and punctuation rather than memorising its
training text. A one-layer LSTM reads one-hot characters, a linear layer with softmax
predicts the next one, and Adam updates every weight from the gradients of
:meth:`bnnslstm.LSTM.backward`. The trained model then writes text of its own from a prompt.
"""

import argparse
import pathlib
import sys
import time

import numpy as np

from ._config import show_config
from ._version import __version__
from .layer import LSTM

TEXT_FILE = pathlib.Path(__file__).with_name("alice.txt")
HELD_OUT_FROM = "CHAPTER IV."


def load_text(path=TEXT_FILE):
    """The book's text without the file's header (its leading ``#`` comment lines)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "".join(lines)


class Adam:
    """Adam on a dict of numpy arrays, updated in place."""

    def __init__(self, params, lr=0.01, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        for k, p in self.params.items():
            g = np.clip(grads[k], -5, 5)
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1**self.t)
            v_hat = self.v[k] / (1 - b2**self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class CharModel:
    """LSTM + linear softmax read-out over characters."""

    def __init__(self, vocab, hidden, seed):
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.lstm = LSTM(len(vocab), hidden, seed=seed)
        self.head = {"weight": rng.uniform(-0.1, 0.1, (len(vocab), hidden)).astype(np.float32),
                     "bias": np.zeros(len(vocab), np.float32)}

    def logits(self, y):
        return y @ self.head["weight"].T + self.head["bias"]

    def loss_and_grads(self, inputs, targets):
        y, _ = self.lstm.forward(inputs)
        logits = self.logits(y)
        logits -= logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=-1, keepdims=True)
        T, B = targets.shape
        picked = probs[np.arange(T)[:, None], np.arange(B)[None, :], targets]
        loss = float(-np.log(picked + 1e-12).mean())
        dlogits = probs
        dlogits[np.arange(T)[:, None], np.arange(B)[None, :], targets] -= 1
        dlogits /= T * B
        head_grads = {"weight": np.einsum("tbv,tbh->vh", dlogits, y),
                      "bias": dlogits.sum(axis=(0, 1))}
        self.lstm.backward(dlogits @ self.head["weight"])
        return loss, head_grads

    def sample(self, prompt, length, rng, temperature=0.5):
        index = {c: i for i, c in enumerate(self.vocab)}
        eye = np.eye(len(self.vocab), dtype=np.float32)
        h = c = None
        text = prompt
        x = eye[[index[ch] for ch in prompt]][:, None, :]
        for _ in range(length):
            y, (h, c) = self.lstm.forward(x, h, c, training=False)
            logits = self.logits(y[-1, 0]) / temperature
            p = np.exp(logits - logits.max())
            nxt = int(rng.choice(len(self.vocab), p=p / p.sum()))
            text += self.vocab[nxt]
            x = eye[[nxt]][:, None, :]
        return text


def cross_entropy(model, eye, data, length):
    """Mean next-character loss over ``data`` cut into sequences of ``length`` (forward only)."""
    count = (len(data) - 1) // length
    windows = np.stack([data[k * length:k * length + length + 1] for k in range(count)],
                       axis=1)  # [T+1][B]
    y, _ = model.lstm.forward(eye[windows[:-1]], training=False)
    logits = model.logits(y)
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    T, B = windows.shape[0] - 1, windows.shape[1]
    return float(-log_probs[np.arange(T)[:, None], np.arange(B)[None, :], windows[1:]].mean())


def demo(epochs=20, hidden=256, seq_len=64, batch=32, batches=10, seed=0, out=None):
    """Train the character model; print the training and held-out loss per epoch and a sample
    to ``out`` (a text file; None: the ``sys.stdout`` of the call).

    Returns ``(training losses, held-out losses)``, one per epoch.
    """
    out = sys.stdout if out is None else out
    text = load_text()
    split = text.index(HELD_OUT_FROM)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    train = np.array([index[c] for c in text[:split]])
    held_out = np.array([index[c] for c in text[split:]])
    eye = np.eye(len(vocab), dtype=np.float32)
    model = CharModel(vocab, hidden, seed)
    params = dict(model.lstm.parameters())
    params.update({f"head.{k}": v for k, v in model.head.items()})
    optimizer = Adam(params, lr=0.01)
    rng = np.random.default_rng(seed)
    print(f"bnnslstm demo: next-character prediction on 'Alice's Adventures in Wonderland', "
          f"LSTM hidden={hidden}, T={seq_len}, B={batch}", file=out)
    print(f"training text: chapters I-III, {len(train)} characters; held out: chapter IV, "
          f"{len(held_out)} characters; {len(vocab)} symbols "
          f"(chance: loss {np.log(len(vocab)):.2f})", file=out)
    print(f"each epoch: {batches} steps on {batches * batch * seq_len} characters drawn from the "
          "training text; losses in nats per character", file=out)
    began = time.perf_counter()
    train_losses, held_out_losses = [], []
    for epoch in range(1, epochs + 1):
        losses = []
        for _ in range(batches):
            starts = rng.integers(0, len(train) - seq_len - 1, size=batch)
            windows = np.stack([train[s:s + seq_len + 1] for s in starts], axis=1)  # [T+1][B]
            loss, head_grads = model.loss_and_grads(eye[windows[:-1]], windows[1:])
            grads = dict(model.lstm.grads)
            grads.update({f"head.{k}": v for k, v in head_grads.items()})
            optimizer.step(grads)
            losses.append(loss)
        train_losses.append(float(np.mean(losses)))
        held_out_losses.append(cross_entropy(model, eye, held_out, 4 * seq_len))
        bar = "#" * int(20 * epoch / epochs)
        print(f"epoch {epoch:3d}/{epochs} [{bar:<20}] training loss {train_losses[-1]:.3f}  "
              f"held-out loss {held_out_losses[-1]:.3f}  "
              f"({time.perf_counter() - began:.1f} s)", file=out)
    sample = model.sample("Alice ", 200, np.random.default_rng(seed))
    print("\nthe trained LSTM continues 'Alice ':\n", file=out)
    print(sample, file=out)
    return train_losses, held_out_losses


def main(argv=None):
    # the docstring's first paragraph on one line, without its reST markup (not for a terminal)
    description = " ".join(__doc__.split("\n\n")[0].split()).replace("``", "")
    parser = argparse.ArgumentParser(prog="bnnslstm", description=description)
    parser.add_argument("--version", action="version", version=f"bnnslstm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("demo", help="train a character-level LSTM and generate text",
                         description="Train a character-level LSTM (bnnslstm.LSTM, numpy only) "
                                     "on Alice's Adventures in Wonderland, print the losses and "
                                     "generate text.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--epochs", type=int, default=20,
                     help="training epochs, each 10 batches of 32 sequences of 64 characters")
    run.add_argument("--hidden", type=int, default=256, help="hidden size of the LSTM")
    run.add_argument("--seed", type=int, default=0,
                     help="seed of the weights, the batches and the sampling")
    sub.add_parser("config", help="print how bnnslstm was built and what it runs on",
                   description="Print bnnslstm.show_config(): the build (compiler, flags, "
                               "Cython, meson), the BLAS the kernels call, the thread pool, the "
                               "elementwise kernels in use and the planner's mode. Give it with "
                               "any performance report.")
    args = parser.parse_args(argv)
    if args.command == "config":
        show_config()
    else:
        demo(epochs=args.epochs, hidden=args.hidden, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
