"""``bnnslstm demo`` (or ``python -m bnnslstm demo``): train a character-level LSTM with this library alone.

The task is next-character prediction on a public-domain excerpt (the opening of Lewis
Carroll's *Alice's Adventures in Wonderland*, 1865) shipped below. A one-layer LSTM reads
one-hot characters, a linear layer with softmax predicts the next one, and Adam updates
every weight from the gradients of :meth:`bnnslstm.LSTM.backward`. The loss falls epoch
by epoch, and the trained model then writes text of its own from a prompt.
"""

import argparse
import sys
import time

import numpy as np

from .layer import LSTM

TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    "nothing to do: once or twice she had peeped into the book her sister was reading, but it had "
    "no pictures or conversations in it, 'and what is the use of a book,' thought Alice 'without "
    "pictures or conversations?' So she was considering in her own mind (as well as she could, for "
    "the hot day made her feel very sleepy and stupid), whether the pleasure of making a "
    "daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a "
    "White Rabbit with pink eyes ran close by her. There was nothing so very remarkable in that; "
    "nor did Alice think it so very much out of the way to hear the Rabbit say to itself, 'Oh dear! "
    "Oh dear! I shall be late!' (when she thought it over afterwards, it occurred to her that she "
    "ought to have wondered at this, but at the time it all seemed quite natural); but when the "
    "Rabbit actually took a watch out of its waistcoat-pocket, and looked at it, and then hurried "
    "on, Alice started to her feet, for it flashed across her mind that she had never before seen a "
    "rabbit with either a waistcoat-pocket, or a watch to take out of it, and burning with "
    "curiosity, she ran across the field after it, and fortunately was just in time to see it pop "
    "down a large rabbit-hole under the hedge. In another moment down went Alice after it, never "
    "once considering how in the world she was to get out again. The rabbit-hole went straight on "
    "like a tunnel for some way, and then dipped suddenly down, so suddenly that Alice had not a "
    "moment to think about stopping herself before she found herself falling down a very deep well."
)


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
        head_grads = {"weight": np.einsum("tbv,tbh->vh", dlogits, y), "bias": dlogits.sum(axis=(0, 1))}
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


def demo(epochs=30, hidden=256, seq_len=48, batch=32, batches=8, seed=0, out=sys.stdout):
    """Train the character model and print the loss per epoch and a generated sample."""
    vocab = sorted(set(TEXT))
    index = {c: i for i, c in enumerate(vocab)}
    data = np.array([index[c] for c in TEXT])
    eye = np.eye(len(vocab), dtype=np.float32)
    model = CharModel(vocab, hidden, seed)
    params = dict(model.lstm.parameters())
    params.update({f"head.{k}": v for k, v in model.head.items()})
    optimizer = Adam(params, lr=0.01)
    rng = np.random.default_rng(seed)
    print(f"bnnslstm demo: next-character prediction on {len(TEXT)} characters of 'Alice in Wonderland' "
          f"({len(vocab)} symbols), LSTM hidden={hidden}, T={seq_len}, B={batch}", file=out)
    print(f"chance level: loss {np.log(len(vocab)):.3f}", file=out)
    began = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = []
        for _ in range(batches):
            starts = rng.integers(0, len(data) - seq_len - 1, size=batch)
            windows = np.stack([data[s:s + seq_len + 1] for s in starts], axis=1)  # [T+1][B]
            loss, head_grads = model.loss_and_grads(eye[windows[:-1]], windows[1:])
            grads = dict(model.lstm.grads)
            grads.update({f"head.{k}": v for k, v in head_grads.items()})
            optimizer.step(grads)
            losses.append(loss)
        bar = "#" * int(30 * epoch / epochs)
        print(f"epoch {epoch:3d}/{epochs} [{bar:<30}] loss {np.mean(losses):.3f}  "
              f"({time.perf_counter() - began:.1f} s)", file=out)
    sample = model.sample("Alice ", 160, np.random.default_rng(seed))
    print("\nthe trained LSTM continues 'Alice ':\n", file=out)
    print(sample, file=out)
    return float(np.mean(losses))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bnnslstm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("demo", help="train a character-level LSTM and generate text")
    run.add_argument("--epochs", type=int, default=30)
    run.add_argument("--hidden", type=int, default=256)
    run.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    demo(epochs=args.epochs, hidden=args.hidden, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
