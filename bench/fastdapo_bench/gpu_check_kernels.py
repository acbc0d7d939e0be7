"""GPU check part (a): the Triton kernels against the float64 full-logits reference, every option.

Options are discovered from ``fused_linear_dapo_loss``'s signature, so options added to the kernels
package later are checked without editing this file (their test values live in ``OPTIONS``).  When
the reference lacks an option, the float64 run of the torch back-end is the oracle instead.
"""

from __future__ import annotations

import inspect
import math

import torch

from .gpu_check_common import Budget, OutOfTime, PartResult, kernels_module, kernels_submodule, md_table

# log(old/new) offsets that land clearly inside or outside the clip range (as in the kernel tests)
LOG_RATIO_OFFSETS = (-0.6, -0.35, -0.1, 0.1, 0.6)
# (atol for logprobs/entropy, relative tolerance for loss and gradients) per dtype
TOLERANCES = {torch.float32: (5e-4, 5e-4), torch.bfloat16: (0.03, 0.03)}


def _case(n, hdim, vocab, dtype, device, seed):
    ref = kernels_submodule("reference")
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, hdim, generator=gen)
    weight = torch.randn(vocab, hdim, generator=gen) * (2.0 / math.sqrt(hdim))
    targets = torch.randint(0, vocab, (n,), generator=gen)
    with torch.no_grad():
        logp = ref.reference_logprobs(hidden, weight, targets, 1.0, torch.float64)[0]
    offsets = torch.tensor(LOG_RATIO_OFFSETS, dtype=torch.float64)
    old = (logp + offsets[torch.randint(0, len(offsets), (n,), generator=gen)]).float()
    adv = torch.randn(n, generator=gen)
    adv = torch.where(torch.rand(n, generator=gen) < 0.15, 0.0, adv)
    mask = torch.rand(n, generator=gen) >= 0.25
    mask[0] = True
    extra = {
        "bias": 0.5 * torch.randn(vocab, generator=gen),
        "rollout_logprobs": (old + 0.2 * torch.randn(n, generator=gen)).float(),
    }
    to = dict(device=device)
    return (
        dict(
            hidden=hidden.to(dtype=dtype, **to),
            weight=weight.to(dtype=dtype, **to),
            targets=targets.to(**to),
            old_logprobs=old.to(**to),
            advantages=adv.to(**to),
            mask=mask.to(**to),
        ),
        {k: v.to(**to) for k, v in extra.items()},
    )


# label -> option kwargs (a value, or a callable(extra tensors, dtype) -> value)
OPTIONS = {
    "base": {},
    "on-policy (old=None)": {"old_logprobs": None},
    "temperature=0.6": {"temperature": 0.6},
    "normalizer=37.5": {"normalizer": 37.5},
    "dual_clip=1.5": {"dual_clip": 1.5},
    "dual_clip=None": {"dual_clip": None},
    "bias": {"bias": lambda extra, dtype: extra["bias"].to(dtype)},
    "logit_scale=0.5": {"logit_scale": 0.5},
    "softcap=5": {"softcap": 5.0},
    "log_ratio_bound=0.3": {"log_ratio_bound": 0.3},
}
ROLLOUT = {"rollout_logprobs": lambda extra, dtype: extra["rollout_logprobs"], "rollout_correction_cap": 2.0}


def available_options() -> dict[str, dict]:
    """The OPTIONS whose every keyword exists in the kernels package's public loss."""
    params = inspect.signature(kernels_module().fused_linear_dapo_loss).parameters
    options = {label: kw for label, kw in OPTIONS.items() if all(k in params for k in kw)}
    if all(k in params for k in ROLLOUT):  # one case per rollout-correction mode the package lists
        modes = getattr(kernels_submodule("dapo_math"), "ROLLOUT_MODES", ())
        options.update({f"rollout_correction={m}": dict(ROLLOUT, rollout_correction=m) for m in modes if m != "none"})
    return options


def _resolve(kw, extra, dtype):
    return {k: v(extra, dtype) if callable(v) else v for k, v in kw.items()}


def _run(fn, inputs, kw, compute64=False):
    """loss, stats, dH, dW of one loss function (float64 leaves when ``compute64``)."""
    cast = (lambda t: t.double()) if compute64 else (lambda t: t.clone())
    h = cast(inputs["hidden"]).requires_grad_(True)
    w = cast(inputs["weight"]).requires_grad_(True)
    args = dict(inputs, hidden=h, weight=w)
    kw = {
        k: (v.double() if compute64 and torch.is_tensor(v) and v.is_floating_point() and k == "bias" else v)
        for k, v in kw.items()
    }
    loss, stats = fn(**{**args, **kw})
    loss.backward()
    return loss, stats, h.grad, w.grad


def _oracle(inputs, kw):
    """Float64 reference (or the float64 torch back-end where the reference lacks an option)."""
    ref = kernels_submodule("reference")
    K = kernels_module()
    ref_params = inspect.signature(ref.reference_dapo_loss).parameters
    kw = dict(kw)
    if kw.get("old_logprobs", 0) is None:  # on-policy: the oracle gets its own log-probs as old
        with torch.no_grad():
            lp = ref.reference_logprobs(
                inputs["hidden"], inputs["weight"], inputs["targets"], kw.get("temperature", 1.0), torch.float64
            )[0]
        inputs = dict(inputs, old_logprobs=lp.float())
        kw.pop("old_logprobs")
    if all(k in ref_params for k in kw):
        fn = lambda **a: ref.reference_dapo_loss(**a, compute_dtype=torch.float64)  # noqa: E731
        return _run(fn, inputs, kw, compute64=True), "float64 reference"
    fn = lambda **a: K.fused_linear_dapo_loss(**a, impl="torch")  # noqa: E731
    return _run(fn, inputs, kw, compute64=True), "float64 torch back-end"


def _errors(ours, ref):
    loss, stats, dh, dw = ours
    r_loss, r_stats, r_dh, r_dw = ref

    def rel(a, b):
        return ((a.double() - b.double()).abs().max() / (b.double().abs().max() + 1e-12)).item()

    err = {
        "loss_rel": abs(loss.item() - r_loss.item()) / max(abs(r_loss.item()), 1e-3),
        "logprobs_abs": (stats["logprobs"].double() - r_stats["logprobs"].double()).abs().max().item(),
        "entropy_abs": (stats["entropy"].double() - r_stats["entropy"].double()).abs().max().item(),
        "dH_rel": rel(dh, r_dh),
        "dW_rel": rel(dw, r_dw),
    }
    return err, math.isfinite(loss.item())


def _compare_one(inputs, extra, dtype, kw_spec):
    K = kernels_module()
    kw = _resolve(kw_spec, extra, dtype)
    ref, oracle = _oracle(inputs, kw)
    ours = _run(lambda **a: K.fused_linear_dapo_loss(**a, impl="triton"), inputs, kw)
    return _errors(ours, ref) + (oracle,)


def run_kernel_check(result: PartResult, device, budget: Budget, cpu: bool):
    """Fills ``result``; one table row per (dtype, option) plus the forward-only log-probs."""
    n, hdim, vocab = (24, 32, 1000) if cpu else (1000, 256, 32003)
    options = available_options()
    missing = [label for label in OPTIONS if label not in options]
    if not any(label.startswith("rollout_correction") for label in options):
        missing.append("rollout_correction")
    result.lines.append(
        f"Shape N={n}, H={hdim}, V={vocab}; oracle: float64 full logits. "
        f"Options checked: {', '.join(options)}."
        + (f" Not in this kernels version: {', '.join(missing)}." if missing else "")
    )
    table = []
    for dtype in (torch.float32, torch.bfloat16):
        atol, rtol = TOLERANCES[dtype]
        inputs, extra = _case(n, hdim, vocab, dtype, device, seed=1)
        for label, kw_spec in options.items():
            if budget.left() < 0:
                raise OutOfTime(f"stopped before {label} ({dtype})")
            item = f"{str(dtype)[6:]} {label}"
            try:
                err, finite, oracle = _compare_one(inputs, extra, dtype, kw_spec)
            except Exception as exc:  # one option failing must not hide the others
                result.add(item, "error", f"{type(exc).__name__}: {str(exc)[:200]}", ok=False)
                table.append([item, "ERROR", f"{type(exc).__name__}: {str(exc)[:100]}", "", "", "", ""])
                continue
            ok = (
                finite
                and err["loss_rel"] <= rtol
                and err["logprobs_abs"] <= atol
                and err["entropy_abs"] <= atol
                and err["dH_rel"] <= rtol
                and err["dW_rel"] <= rtol
            )
            for metric, value in err.items():
                result.add(item, metric, value, ok=ok if metric == "dW_rel" else None, detail=oracle)
            table.append(
                [item, "ok" if ok else "FAIL", oracle]
                + [f"{err[k]:.2e}" for k in ("loss_rel", "logprobs_abs", "dH_rel", "dW_rel")]
            )
        _check_logprobs(result, table, inputs, dtype, atol)
    result.lines += md_table(["case", "verdict", "oracle", "loss rel", "logp abs", "dH rel", "dW rel"], table)
    bad = [r[0] for r in table if r[1] != "ok"]
    failing = f"; failing: {', '.join(bad)}" if bad else ""
    result.summary.append(f"{len(table) - len(bad)}/{len(table)} cases ok{failing}")


def _check_logprobs(result, table, inputs, dtype, atol):
    K, ref = kernels_module(), kernels_submodule("reference")
    item = f"{str(dtype)[6:]} linear_logprobs"
    lp, ent = K.linear_logprobs(inputs["hidden"], inputs["weight"], inputs["targets"], impl="triton")
    r_lp, r_ent, _ = ref.reference_logprobs(inputs["hidden"], inputs["weight"], inputs["targets"], 1.0, torch.float64)
    e_lp = (lp.double() - r_lp).abs().max().item()
    e_ent = (ent.double() - r_ent).abs().max().item()
    ok = e_lp <= atol and e_ent <= atol
    result.add(item, "logprobs_abs", e_lp, detail="float64 reference")
    result.add(item, "entropy_abs", e_ent, ok=ok, detail="float64 reference")
    table.append([item, "ok" if ok else "FAIL", "float64 reference", "", f"{e_lp:.2e}", "", ""])
