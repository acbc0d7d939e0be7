"""Shape presets and synthetic batches for the fused-loss kernel benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# (N tokens, H hidden, V vocab)
PRESETS = {
    "smoke": [(64, 64, 1000), (128, 64, 5003)],
    # the first CPU shape is the acceptance shape
    "cpu": [(1024, 512, 151936), (256, 512, 151936), (1024, 512, 32768)],
    "gpu": [
        (4096, 4096, 151936),
        (16384, 4096, 151936),
        (4096, 5120, 151936),
        (16384, 5120, 151936),
        (8192, 4096, 131072),
        (16384, 4096, 32768),
    ],
}
SEQ_LEN = 256  # tokens per sequence when a provider wants [B, T, H]


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """ "1024x512x151936,256x512x32000" -> [(1024, 512, 151936), (256, 512, 32000)]."""
    shapes = []
    for item in text.split(","):
        n, h, v = (int(x) for x in item.lower().split("x"))
        shapes.append((n, h, v))
    return shapes


@dataclass
class Batch:
    hidden: torch.Tensor  # [N, H] leaf, requires grad
    weight: torch.Tensor  # [V, H] leaf, requires grad
    targets: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor  # per token (constant within a sequence)
    mask: torch.Tensor
    seq_len: int

    @property
    def shape(self):
        return self.hidden.shape[0], self.hidden.shape[1], self.weight.shape[0]

    def zero_grad(self):
        self.hidden.grad = None
        self.weight.grad = None


def make_batch(n, hdim, vocab, dtype, device, valid_frac=1.0, seed=0) -> Batch:
    """Random batch whose old log-probs sit near the current ones (a realistic clip fraction)."""
    from fastdapo_kernels import linear_logprobs

    gen = torch.Generator(device="cpu").manual_seed(seed)
    seq = min(SEQ_LEN, n)
    n_seq = -(-n // seq)
    hidden = torch.randn(n, hdim, generator=gen).to(device=device, dtype=dtype)
    weight = (torch.randn(vocab, hdim, generator=gen) / hdim**0.5).to(device=device, dtype=dtype)
    targets = torch.randint(0, vocab, (n,), generator=gen).to(device)
    logp, _ = linear_logprobs(hidden, weight, targets, impl="auto")
    old = logp + 0.1 * torch.randn(n, generator=gen).to(device)
    seq_adv = torch.randn(n_seq, generator=gen)
    adv = seq_adv.repeat_interleave(seq)[:n].to(device)
    mask = (torch.rand(n, generator=gen) < valid_frac).to(device)
    mask[0] = True
    return Batch(hidden.requires_grad_(True), weight.requires_grad_(True), targets, old, adv, mask, seq)
