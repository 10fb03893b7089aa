"""Train the plate recogniser on synthetic plates (anpr/synth.py) and export it to ONNX.

Needs PyTorch, which the project does not depend on: use a separate virtual environment,

    python3 -m venv /tmp/train-venv
    /tmp/train-venv/bin/pip install torch==2.13.0 numpy opencv-python-headless onnx pillow
    PYTHONPATH=. nice -n 15 /tmp/train-venv/bin/python tools/train_plate_rec.py --minutes 60 --out /tmp/platerec
    PYTHONPATH=. /tmp/train-venv/bin/python tools/train_plate_rec.py --export /tmp/platerec/last.pt anpr/models/plate_rec.onnx

The model (about 0.3 M parameters): a small CNN over the 48-pixel-high line crop that
anpr.reader cuts (BGR scaled to -1..1, the PP-OCR convention), down to one column of
features per 4 pixels of width, then a bidirectional LSTM and a linear layer over 38
classes: the CTC blank, A-Z0-9, and a space that is never a target (PP-OCR's class
layout, so the reader's decoder takes it as it takes PP-OCR's). The ONNX file's input ``x``
is (N, 3, 48, W), its output (N, W/8, 38) softmax probabilities; the characters are in its
metadata (``character``, one a line), as in rapidocr's models.

Fixed seeds: data seed 17 for training, 1017 for the synthetic validation set; ``--mix`` the
layouts' shares (``trained``, the default: those of the committed model, which these seeds
rebuild; ``all``: with the US-style plates added later, anpr.synth.LAYOUTS). One thread
(``torch.set_num_threads(1)``): the machine it was trained on is shared. A checkpoint is
written every ``--checkpoint-every`` steps and at the end; ``--resume`` goes on from one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anpr import synth

N_CLASSES = 1 + len(synth.SYMBOLS) + 1  # blank, A-Z0-9, space (never a target)
TRAIN_SEED = 17
VALID_SEED = 1017


class PlateRec(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, k: tuple[int, int] = (3, 3), pad: tuple[int, int] = (1, 1)) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.cnn = nn.Sequential(
            nn.AvgPool2d(2, 2),  # 24 x W/2: plate characters need no more to be read
            block(3, 32), nn.MaxPool2d(2, 2),  # 12 x W/4
            block(32, 64), nn.MaxPool2d(2, 2),  # 6 x W/8
            block(64, 96), nn.MaxPool2d((2, 1), (2, 1)),  # 3 x W/8
            block(96, 128, (3, 3), (0, 1)),  # 1 x W/8
        )
        self.rnn = nn.LSTM(128, 64, batch_first=True, bidirectional=True)
        self.head = nn.Linear(128, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 48, W) -> logits (N, W/8, classes)."""
        f = self.cnn(x).squeeze(2).permute(0, 2, 1)
        f, _ = self.rnn(f)
        return self.head(f)


class Exported(nn.Module):
    """The exported graph: softmax probabilities, as the reader expects."""

    def __init__(self, model: PlateRec) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def batches(rng: np.random.Generator, size: int, shares: dict[str, float], group: int = 4, reuse: int = 2):
    """Training batches of the layouts in ``shares``, ``group`` at a time from samples sorted by
    width (less padding), each group gone through ``reuse`` times (drawing a sample costs about
    half a step)."""
    while True:
        samples = sorted((synth.sample(rng, shares=shares) for _ in range(size * group)), key=lambda s: s[0].shape[1])
        made = [batch(samples[k * size : (k + 1) * size]) for k in range(group)]
        for _ in range(reuse):
            for k in rng.permutation(group):
                yield made[k]


def batch(samples: list[tuple[np.ndarray, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training batch: crops padded on the right with 0 (grey, as the reader pads), the
    targets concatenated, and both lengths."""
    size = len(samples)
    width = max(32, max(img.shape[1] for img, _ in samples))
    width = (width + 7) // 8 * 8
    x = np.zeros((size, 3, synth.LINE_HEIGHT_PX, width), np.float32)
    targets: list[int] = []
    lengths = []
    for i, (img, text) in enumerate(samples):
        x[i, :, :, : img.shape[1]] = (img.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)
        targets.extend(synth.SYMBOLS.index(ch) + 1 for ch in text)
        lengths.append(len(text))
    steps = torch.full((size,), width // 8, dtype=torch.long)
    return torch.from_numpy(x), torch.tensor(targets, dtype=torch.long), torch.tensor(lengths, dtype=torch.long), steps


def greedy(logits: torch.Tensor) -> list[str]:
    out = []
    for row in logits.argmax(-1).tolist():
        text, prev = [], 0
        for k in row:
            if k != prev and 1 <= k <= len(synth.SYMBOLS):
                text.append(synth.SYMBOLS[k - 1])
            prev = k
        out.append("".join(text))
    return out


def validate(model: PlateRec, valid: list[tuple[torch.Tensor, list[str]]]) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for x, texts in valid:
            for got, want in zip(greedy(model(x)), texts, strict=True):
                right += got == want
                total += 1
    model.train()
    return right / total


def validation_set(shares: dict[str, float], n: int = 512) -> list[tuple[torch.Tensor, list[str]]]:
    rng = np.random.default_rng(VALID_SEED)
    out = []
    for _ in range(n // 64):
        samples = [synth.sample(rng, shares=shares) for _ in range(64)]
        width = (max(img.shape[1] for img, _ in samples) + 7) // 8 * 8
        x = np.zeros((64, 3, synth.LINE_HEIGHT_PX, width), np.float32)
        for i, (img, _) in enumerate(samples):
            x[i, :, :, : img.shape[1]] = (img.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)
        out.append((torch.from_numpy(x), [t for _, t in samples]))
    return out


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(TRAIN_SEED)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = PlateRec()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, spent, cpu_spent = 0, 0.0, 0.0
    rng = np.random.default_rng(TRAIN_SEED)
    if args.init_onnx:
        init_from_onnx(model, args.init_onnx, np.random.default_rng(VALID_SEED + 1))
    if args.resume:
        state = torch.load(args.resume, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, spent, cpu_spent, rng = state["step"], state["seconds"], state["cpu_seconds"], state["rng"]
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    valid = validation_set(synth.MIXES[args.mix])
    log = (out / "log.jsonl").open("a")
    budget, cpu_budget = args.minutes * 60.0, args.cpu_minutes * 60.0
    started = time.perf_counter() - spent
    cpu_started = time.process_time() - cpu_spent
    losses: list[float] = []
    stream = batches(rng, args.batch, synth.MIXES[args.mix])

    def progress() -> float:
        """How much of the budget is spent: wall or CPU time, whichever runs out first."""
        return max((time.perf_counter() - started) / budget, (time.process_time() - cpu_started) / cpu_budget)

    while (done := progress()) < 1.0:
        # Learning rate: warm up over 200 steps, then cosine down to 5% at the time budget.
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * done)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, targets, lengths, steps = next(stream)
        logp = model(x).log_softmax(-1).permute(1, 0, 2)  # (T, N, C) for CTCLoss
        loss = ctc(logp, targets, steps, lengths)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % args.checkpoint_every == 0:
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            acc = validate(model, valid)
            entry = {"step": step, "seconds": round(seconds), "cpu_seconds": round(cpu), "loss": round(float(np.mean(losses)), 4), "lr": lr, "valid_exact": acc}
            print(json.dumps(entry), flush=True)
            log.write(json.dumps(entry) + "\n")
            log.flush()
            losses = []
            _save(out / "last.pt", model, opt, step, seconds, cpu, rng)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _save(out / "last.pt", model, opt, step, seconds, cpu, rng)
    entry = {"step": step, "seconds": round(seconds), "cpu_seconds": round(cpu), "valid_exact": validate(model, valid), "final": True}
    print(json.dumps(entry), flush=True)
    log.write(json.dumps(entry) + "\n")


def init_from_onnx(model: PlateRec, onnx_path: str, rng: np.random.Generator) -> None:
    """Start from an exported model's weights (a longer run goes on from the committed model
    when its checkpoint is gone). The export folded each batch norm into its convolution;
    each batch norm is set up again as the identity on the statistics of its convolution's
    output over a few synthetic batches, so that training mode computes nearly what the file
    did. LSTM gates are reordered from ONNX's (i, o, f, c) to PyTorch's (i, f, c, o)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(onnx_path).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    blocks = [m for m in model.cnn if isinstance(m, nn.Sequential)]
    x = torch.cat([batch([synth.sample(rng) for _ in range(32)])[0][:, :, :, :96] for _ in range(4)])
    with torch.no_grad():
        h = x
        for layer in model.cnn:
            if isinstance(layer, nn.Sequential):
                conv, bn = layer[0], layer[1]
                node = convs[blocks.index(layer)]
                conv.weight.copy_(torch.from_numpy(weights[node.input[1]]))
                bias = torch.from_numpy(weights[node.input[2]])
                z = conv(h)  # without the folded bias: the batch norm adds it back
                mean, var = z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False)
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.weight.copy_(torch.sqrt(var + bn.eps))
                bn.bias.copy_(mean + bias)
                h = torch.relu(z + bias[None, :, None, None])
            else:
                h = layer(h)
        lstm = next(n for n in graph.node if n.op_type == "LSTM")
        w, r, b = (weights[lstm.input[k]] for k in (1, 2, 3))
        order = lambda a: np.concatenate([a[0:64], a[128:192], a[192:256], a[64:128]])  # noqa: E731
        for d, suffix in enumerate(("", "_reverse")):
            getattr(model.rnn, f"weight_ih_l0{suffix}").copy_(torch.from_numpy(order(w[d])))
            getattr(model.rnn, f"weight_hh_l0{suffix}").copy_(torch.from_numpy(order(r[d])))
            getattr(model.rnn, f"bias_ih_l0{suffix}").copy_(torch.from_numpy(order(b[d][:256])))
            getattr(model.rnn, f"bias_hh_l0{suffix}").copy_(torch.from_numpy(order(b[d][256:])))
        matmul = next(n for n in graph.node if n.op_type == "MatMul")
        model.head.weight.copy_(torch.from_numpy(weights[matmul.input[1]].T))
        model.head.bias.copy_(torch.from_numpy(weights["model.head.bias"]))


def _save(path: Path, model: PlateRec, opt: torch.optim.Optimizer, step: int, seconds: float, cpu: float, rng: np.random.Generator) -> None:
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": seconds, "cpu_seconds": cpu, "rng": rng}
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # a checkpoint is whole or absent, never half written


def export(checkpoint: str, onnx_path: str) -> None:
    import onnx

    model = PlateRec()
    state = torch.load(checkpoint, weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    x = torch.zeros(1, 3, synth.LINE_HEIGHT_PX, 200)
    torch.onnx.export(
        Exported(model), (x,), onnx_path, input_names=["x"], output_names=["probs"], opset_version=17,
        dynamic_axes={"x": {0: "n", 3: "w"}, "probs": {0: "n", 1: "t"}}, dynamo=False,
    )
    m = onnx.load(onnx_path)
    for key, value in (
        ("character", "\n".join(synth.SYMBOLS)),
        ("trained", f"steps={state['step']} seconds={round(state['seconds'])} cpu_seconds={round(state['cpu_seconds'])} seed={TRAIN_SEED} data=anpr/synth.py"),
    ):
        meta = m.metadata_props.add()
        meta.key, meta.value = key, value
    onnx.save(m, onnx_path)
    print(f"wrote {onnx_path}: {Path(onnx_path).stat().st_size / 1e6:.2f} MB, step {state['step']}, {state['seconds'] / 60:.1f} min")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/platerec", help="folder for checkpoints and the log")
    p.add_argument("--minutes", type=float, default=60.0, help="training time budget, wall clock")
    p.add_argument("--cpu-minutes", type=float, default=60.0, help="training time budget, CPU (whichever runs out first)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--mix", choices=sorted(synth.MIXES), default="trained",
                   help="the layouts' shares: 'trained', the committed model's (rebuilds it); 'all', with US-style plates")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--resume", help="a checkpoint to go on from")
    p.add_argument("--init-onnx", help="start from an exported model's weights (init_from_onnx)")
    p.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "ONNX"), help="export a checkpoint to ONNX and stop")
    args = p.parse_args()
    if args.export:
        export(*args.export)
    else:
        train(args)


if __name__ == "__main__":
    main()
