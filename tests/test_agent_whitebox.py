"""White-box (Exposure) agent: penalties and the trajectory buffer against plain loops, learning on a toy set,
resume, and the inference method's recipes."""

from __future__ import annotations

import csv
import math
import os

import pytest
import torch
from torch import nn

from deepexposure.agents.whitebox import (
    N_FILTERS,
    N_PARAMS,
    TrajectoryBuffer,
    WhiteBoxAgent,
    WhiteBoxConfig,
    WhiteBoxMethod,
    WhiteBoxPolicy,
    apply_chosen_filters,
    edit_cost,
    entropy_penalty,
    policy_step,
    pretrain_objective,
    range_penalty,
    reuse_penalty,
    rollout,
    state_planes,
    unused_log_probs,
)
from deepexposure.filters import FILTER_NAMES, FILTERS, apply_filter, global_exposure, white_balance
from deepexposure.methods import get_method
from deepexposure.pretrain import quantize_8bit
from deepexposure.recipe import Recipe, render
from deepexposure.train import TrainConfig, Trainer

from .toy import assert_same_training_state, random_crops, straight_and_resumed

WB = FILTER_NAMES.index("white_balance")


# -- maths against plain loops ---------------------------------------------------------------


def test_entropy_penalty_matches_loop():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(6, N_FILTERS, generator=g) * 2, dim=1)
    probs[0] = 1.0 / N_FILTERS  # uniform: no penalty
    probs[1] = 0.0
    probs[1, 3] = 1.0  # one-hot: the largest penalty, weight * log 8
    got = entropy_penalty(probs, 0.05)
    for b in range(6):
        s = sum(float(p) * math.log(float(p)) for p in probs[b] if p > 0)
        assert abs(float(got[b]) - 0.05 * (math.log(N_FILTERS) + s)) < 1e-6
    assert abs(float(got[0])) < 1e-6 and abs(float(got[1]) - 0.05 * math.log(8)) < 1e-6


def test_reuse_penalty_matches_loop():
    g = torch.Generator().manual_seed(1)
    used = (torch.rand(10, N_FILTERS, generator=g) > 0.5).float()
    action = torch.randint(0, N_FILTERS, (10,), generator=g)
    got = reuse_penalty(used, action, 1.0)
    for b in range(10):
        assert float(got[b]) == (1.0 if used[b, int(action[b])] == 1 else 0.0)


def test_edit_cost_matches_loop_and_is_off_by_default():
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(3, 3, 4, 5, generator=g), torch.rand(3, 3, 4, 5, generator=g)
    ref = []
    for i in range(3):
        tot = 0.0
        for c in range(3):
            for y in range(4):
                for x in range(5):
                    tot += (float(b[i, c, y, x]) - float(a[i, c, y, x])) ** 2
        ref.append(tot / 60)
    assert torch.allclose(edit_cost(a, b), torch.tensor(ref), atol=1e-6)
    assert WhiteBoxConfig().edit_penalty == 0.0


def test_range_penalty_matches_loop():
    g = torch.Generator().manual_seed(2)
    img = torch.rand(3, 3, 4, 5, generator=g) * 1.6 - 0.3
    got = range_penalty(img)
    for b in range(3):
        vals = img[b].flatten().tolist()
        ref = sum(max(v - 1, 0) ** 2 + max(-v, 0) ** 2 for v in vals) / len(vals)
        assert abs(float(got[b]) - ref) < 1e-6
    assert float(range_penalty(img.clamp(0, 1)).abs().max()) == 0.0


def test_policy_outputs_and_chosen_filters_match_loop():
    torch.manual_seed(0)
    pol = WhiteBoxPolicy.create(base_channels=4, n_edits=5, image_size=16)
    assert pol.trunk.config.out_features == N_FILTERS + N_PARAMS == 48
    raw = torch.randn(N_FILTERS, N_PARAMS) * 30  # far into every squash's tails
    params = pol.filter_params(raw)
    for spec, p in zip(FILTERS.values(), params):
        assert p.shape == (N_FILTERS, spec.n_params)
        assert (p >= torch.tensor(spec.low) - 1e-6).all() and (p <= torch.tensor(spec.high) + 1e-6).all(), spec.name
    img = torch.rand(N_FILTERS, 3, 16, 16)
    action = torch.randperm(N_FILTERS)
    got = apply_chosen_filters(img, action, params)
    for b in range(N_FILTERS):
        name = FILTER_NAMES[int(action[b])]
        ref = apply_filter(name, img[b : b + 1], params[int(action[b])][b : b + 1])
        assert torch.allclose(got[b : b + 1], ref, atol=1e-6), name
    # state planes: 8 used flags then steps / n_edits, spatially constant
    used = torch.zeros(2, N_FILTERS)
    used[1, 2] = 1
    planes = state_planes(used, torch.tensor([0, 3]), 5, 4)
    assert planes.shape == (2, 9, 4, 4) and float(planes[1, 2].min()) == 1 and float(planes[1, 8, 0, 0]) == pytest.approx(0.6)
    # a step marks the filter used and counts
    with torch.no_grad():
        r = policy_step(pol, img[:2], used, torch.tensor([0, 4]), greedy=True)
    assert r.next_steps.tolist() == [1, 5] and r.done.tolist() == [False, True]
    for b in range(2):
        assert float(r.next_used[b, int(r.action[b])]) == 1.0
    assert float(r.next_img.min()) >= 0 and float(r.next_img.max()) <= 1


# -- the trajectory buffer -------------------------------------------------------------------


def _fake_step(images, steps, used):
    """A stand-in for the policy: brighten by 0.01, use filter (step mod 8)."""
    action = steps % N_FILTERS
    nxt_used = used.clone()
    nxt_used[torch.arange(len(steps)), action] = 1.0
    return images + 0.01, steps + 1, nxt_used


def _run_buffer(seed: int, iters: int, n: int, b: int, n_edits: int, inputs: torch.Tensor):
    g = torch.Generator().manual_seed(seed)
    buf = TrajectoryBuffer.fill(inputs, n, n_edits, g)
    log = []
    for _ in range(iters):
        pick = torch.randint(0, len(inputs), (b,), generator=g)
        slots = buf.draw(inputs[pick], g, fresh_src=pick)
        buf.put(slots, *_fake_step(*buf.get(slots)))
        log.append((slots.tolist(), buf.sample_finished(b, g)))
    return buf, log


def test_trajectory_buffer_matches_loop():
    n, b, n_edits, iters = 6, 3, 2, 12
    inputs = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1).expand(20, 3, 2, 2).contiguous()
    buf, log = _run_buffer(5, iters, n, b, n_edits, inputs)

    # plain-loop reference: a list of dicts, the same random draws
    g = torch.Generator().manual_seed(5)
    pick = torch.randint(0, len(inputs), (n,), generator=g)
    ref = [{"img": inputs[int(i)].clone(), "k": 0, "used": [0.0] * N_FILTERS, "src": int(i)} for i in pick]
    n_refilled = 0
    for it in range(iters):
        fresh_src = torch.randint(0, len(inputs), (b,), generator=g)
        fresh = inputs[fresh_src]
        slots = torch.randperm(n, generator=g)[:b].tolist()
        assert slots == log[it][0] and len(set(slots)) == b
        for j, s in enumerate(slots):
            if ref[s]["k"] == n_edits:  # finished: replaced by a fresh input
                ref[s] = {"img": fresh[j].clone(), "k": 0, "used": [0.0] * N_FILTERS, "src": int(fresh_src[j])}
                n_refilled += 1
            e = ref[s]
            e["used"][e["k"] % N_FILTERS] = 1.0
            e["img"] = e["img"] + 0.01
            e["k"] += 1
        finished = [i for i in range(n) if ref[i]["k"] == n_edits]
        order = torch.randperm(len(finished), generator=g)[:b].tolist()
        want = torch.stack([ref[finished[o]]["img"] for o in order]) if finished else torch.zeros(0, 3, 2, 2)
        assert torch.equal(log[it][1], want)
    assert n_refilled > 0  # the run did exercise refills
    for i in range(n):
        assert torch.allclose(buf.images[i], ref[i]["img"])
        assert int(buf.steps[i]) == ref[i]["k"] and buf.used[i].tolist() == ref[i]["used"]
        assert int(buf.src[i]) == ref[i]["src"]  # each entry knows its input (paired training finds its reference)
    assert int(buf.steps.max()) <= n_edits

    # deterministic under a seed, different under another
    again, _ = _run_buffer(5, iters, n, b, n_edits, inputs)
    other, _ = _run_buffer(6, iters, n, b, n_edits, inputs)
    assert torch.equal(again.images, buf.images) and torch.equal(again.steps, buf.steps)
    assert not (torch.equal(other.images, buf.images) and torch.equal(other.steps, buf.steps))
    # state_dict round trip
    back = TrajectoryBuffer.from_state_dict(buf.state_dict(), n_edits)
    assert torch.equal(back.images, buf.images) and torch.equal(back.used, buf.used) and torch.equal(back.src, buf.src)
    old = {k: v for k, v in buf.state_dict().items() if k != "buffer_src"}  # a checkpoint from before src existed
    assert (TrajectoryBuffer.from_state_dict(old, n_edits).src == -1).all()


def test_warm_buffer_starts_in_steady_state():
    """Every entry has taken 1..n_edits steps of the policy, all stages occur, a fifth is finished (so the
    value network sees terminal transitions and the discriminator real fakes from the first step)."""
    torch.manual_seed(0)
    pol = WhiteBoxPolicy.create(base_channels=4, n_edits=5, image_size=16)
    inputs = random_crops(1, 6, 16)
    buf = TrajectoryBuffer.warm(pol, inputs, 200, torch.Generator().manual_seed(4), exploration=0.05)
    assert len(buf) == 200 and buf.steps.min() >= 1 and buf.steps.max() <= 5
    counts = torch.bincount(buf.steps, minlength=6)[1:]
    assert (counts > 20).all(), counts  # ~40 each
    assert int(buf.finished().sum()) == int(counts[-1]) >= 20
    n_used = buf.used.sum(1)
    assert (n_used >= 1).all() and (n_used <= buf.steps.float()).all()
    assert float(buf.images.min()) >= 0 and float(buf.images.max()) <= 1
    # the images are the policy's: an entry that took one step is one policy step from some input
    one = (buf.steps == 1).nonzero().squeeze(1)[:3]
    with torch.no_grad():
        for i in one.tolist():
            f = int(buf.used[i].argmax())
            outs = [FILTERS[FILTER_NAMES[f]].fn(inputs[j : j + 1], pol.filter_params(pol(inputs[j : j + 1], torch.zeros(1, N_FILTERS), torch.zeros(1, dtype=torch.long))[1])[f]).clamp(0, 1) for j in range(len(inputs))]
            assert any(torch.allclose(buf.images[i : i + 1], o, atol=1e-5) for o in outs)
    again = TrajectoryBuffer.warm(pol, inputs, 200, torch.Generator().manual_seed(4), exploration=0.05)
    assert torch.equal(again.images, buf.images) and torch.equal(again.steps, buf.steps)


def test_fresh_policy_starts_near_identity():
    """A fresh policy's parameter outputs sit at (almost) every filter's identity, including the sigmoid
    heads of saturation and black & white, whose raw 0 would mean 50 % strength."""
    torch.manual_seed(0)
    pol = WhiteBoxPolicy.create(base_channels=8)
    img = random_crops(3, 1)[:2]
    _, raw = pol(img, torch.zeros(2, N_FILTERS), torch.zeros(2))
    for name, params in zip(FILTER_NAMES, pol.filter_params(raw.detach())):
        change = (FILTERS[name].fn(img, params) - img).abs().mean()
        assert change < 0.05, (name, float(change))
    bw = pol.filter_params(raw.detach())[FILTER_NAMES.index("black_and_white")]
    assert float(bw.max()) < 0.1  # sigmoid(0) would be 0.5


def test_greedy_never_reuses_a_filter():
    """At inference the argmax is taken over the filters not used yet: a policy that strongly prefers
    one filter still makes n_edits distinct edits, the preferred one first."""
    torch.manual_seed(0)
    pol = WhiteBoxPolicy.create(base_channels=4, n_edits=5, image_size=16)
    with torch.no_grad():
        pol.trunk.fc[-1].bias[:N_FILTERS] = torch.tensor([0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 8.0, 0.0])
    traj = rollout(pol, random_crops(1, 4, 16), greedy=True)
    acts = torch.stack([s.action for s in traj.steps], 1)
    assert acts[:, 0].eq(WB).all() and acts[:, 1].eq(6).all()
    for row in acts.tolist():
        assert len(set(row)) == 5, row


# -- learning on a toy set whose answer is known -----------------------------------------------


class _ColourCritic(nn.Module):
    """A linear WGAN critic on the per-channel means, ``D = w . (mean_rgb * S)``, starting at ``w = 0``.

    The scale ``S`` (image side) makes a unit input gradient (the gradient penalty's target) an O(1)
    ``w``. It is trained by the Trainer's own WGAN-GP loss and schedule; the Trainer's convolutional
    discriminator needs far more than a unit test's CPU budget to pick up a global colour cast.
    """

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, img):
        return self.linear(img.mean(dim=(2, 3)) * img.shape[-1])


def _probe(policy: WhiteBoxPolicy, inputs: torch.Tensor) -> tuple[float, float, float]:
    """On the greedy trajectories: (mean over photos of the largest pi(white_balance) along the way,
    share of photos whose trajectory uses white balance, mean log(W_r / W_b) of the first step's
    white-balance parameters)."""
    with torch.no_grad():
        traj = rollout(policy, inputs, greedy=True)
        pref = torch.stack([s.probs[:, WB] for s in traj.steps], 1).amax(1).mean()
        uses = torch.stack([s.action for s in traj.steps], 1).eq(WB).any(1).float().mean()
        wb = traj.steps[0].params[WB]
    return float(pref), float(uses), float(torch.log(wb[:, 0] / wb[:, 2]).mean())


@pytest.mark.slow
def test_learns_toy_white_balance():
    """Targets are real photo crops made warmer (red x1.25, blue x0.8); the inputs are other, unedited crops.
    A short run must make the agent prefer white balance and turn its red/blue ratio up."""
    torch.set_num_threads(1)
    seed = int(os.environ.get("WHITEBOX_TOY_SEED", "0"))
    size = 16  # global colour: a 16x16 thumbnail is enough, and 16x cheaper than 64x64
    targets = white_balance(random_crops(0, 8, size), torch.tensor([[1.25, 1.0, 0.8]])).clamp(0, 1)
    inputs = random_crops(1, 8, size)
    acfg = WhiteBoxConfig(n_edits=2, buffer_size=32, base_channels=8, image_size=size, lr_policy=3e-4, lr_value=1e-3,
                          lr_policy_final=1.0, lr_value_final=1.0, disc_reward_scale=1.0)
    tcfg = TrainConfig(steps=120, p_steps=30, d_steps=5, lr_disc=1e-2, lr_disc_final=1.0, batch_size=8,
                       disc_base_channels=8, image_size=size, seed=seed, sample_every=0, ckpt_every=10**6)
    torch.manual_seed(seed)
    tr = Trainer(WhiteBoxAgent(acfg, tcfg.batch_size), tcfg, inputs, targets, "unused")
    tr.disc = _ColourCritic()
    tr.opt_disc = torch.optim.Adam(tr.disc.parameters(), lr=tcfg.lr_disc, betas=tcfg.disc_betas)
    tr.agent.prepare(inputs)
    pref0, uses0, warm0 = _probe(tr.agent.policy, inputs)
    while tr.step < tr.total:
        tr.train_one()
    pref1, uses1, warm1 = _probe(tr.agent.policy, inputs)
    assert pref1 > max(0.3, pref0 + 0.2), (pref0, pref1)  # prefers white balance (untrained: ~1/8)
    assert uses1 >= 0.9, (uses0, uses1)  # and uses it on (nearly) every photo
    assert warm1 > warm0 + 0.25, (warm0, warm1)  # warmer: W_r / W_b goes up


class _FlatCritic(nn.Module):
    """A critic with no opinion: every image scores 0 (only the paired term can teach)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return (self.b * 0).expand(x.shape[0], 1) + 0 * x.mean((1, 2, 3))[:, None]


@pytest.mark.slow
def test_references_teach_the_missing_edit():
    """Paired training: the inputs are photos made cooler (red x0.8, blue x1.25), the references the
    photos themselves, the critic flat. The fidelity term alone must make the agent prefer white
    balance, warm the photos, and bring its outputs closer to the references."""
    torch.set_num_threads(1)
    size = 16
    refs = random_crops(1, 8, size)
    inputs = white_balance(refs, torch.tensor([[0.8, 1.0, 1.25]])).clamp(0, 1)
    acfg = WhiteBoxConfig(n_edits=2, buffer_size=32, base_channels=8, image_size=size, lr_policy=3e-4, lr_value=1e-3,
                          lr_policy_final=1.0, lr_value_final=1.0, disc_reward_scale=1.0)
    tcfg = TrainConfig(steps=120, p_steps=5, d_steps=1, lr_disc=1e-3, lr_disc_final=1.0, batch_size=8, fidelity_weight=300.0,
                       disc_base_channels=8, image_size=size, seed=0, sample_every=0, ckpt_every=10**6)
    torch.manual_seed(0)
    tr = Trainer(WhiteBoxAgent(acfg, tcfg.batch_size), tcfg, inputs, random_crops(0, 8, size), "unused", references=refs)
    tr.disc = _FlatCritic()
    tr.opt_disc = torch.optim.Adam(tr.disc.parameters(), lr=tcfg.lr_disc, betas=tcfg.disc_betas)
    tr.agent.prepare(inputs)

    def mse():
        with torch.no_grad():
            return float((tr.agent.generate_eval(torch.arange(len(refs)), inputs) - refs).pow(2).mean())

    pref0, _, warm0 = _probe(tr.agent.policy, inputs)
    mse0 = mse()
    while tr.step < tr.total:
        tr.train_one()
    pref1, uses1, warm1 = _probe(tr.agent.policy, inputs)
    assert pref1 > max(0.3, pref0 + 0.2), (pref0, pref1)
    assert warm1 > warm0 + 0.25, (warm0, warm1)
    assert mse() < 0.7 * mse0, (mse0, mse())


# -- supervised pre-training (not in the paper) ----------------------------------------------------


class _Shifted(nn.Module):
    """The policy with ``shift (48,)`` added to its outputs: a differentiable handle on ``theta`` for the checks."""

    def __init__(self, policy: WhiteBoxPolicy, shift: torch.Tensor):
        super().__init__()
        self.policy, self.shift, self.n_edits, self.n_steps = policy, shift, policy.n_edits, policy.n_steps
        self.region_mask, self.next_used = policy.region_mask, policy.next_used

    def forward(self, img, used, steps, mask=None):
        logits, raw = self.policy(img, used, steps, mask)
        return logits + self.shift[:N_FILTERS], raw + self.shift[N_FILTERS:]

    def filter_params(self, raw):
        return self.policy.filter_params(raw)


def _tiny_policy(n_edits: int, seed: int = 0) -> WhiteBoxPolicy:
    torch.manual_seed(seed)
    return WhiteBoxPolicy.create(base_channels=4, n_edits=n_edits, image_size=16).double()


def test_unused_log_probs_is_the_masked_softmax():
    logits = torch.randn(3, N_FILTERS, generator=torch.Generator().manual_seed(0))
    used = torch.zeros(3, N_FILTERS)
    used[1, [0, 4]] = 1
    used[2] = 1  # everything used: all filters again
    lp = unused_log_probs(logits, used)
    for b in range(3):
        keep = [f for f in range(N_FILTERS) if used[b, f] < 0.5] or list(range(N_FILTERS))
        want = torch.full((N_FILTERS,), float("-inf"))
        want[keep] = torch.log_softmax(logits[b, keep], 0)
        assert torch.allclose(lp[b], want)


@pytest.mark.slow
def test_pretraining_path_gradient_matches_finite_differences():
    """For fixed filter draws the cost's gradient (filters, clamps, penalties, the images the next step
    sees) is the exact derivative: float64 gradcheck through two steps."""
    policy = _tiny_policy(2)
    refs = random_crops(2, 1, 16).double()
    inputs = (refs * 0.6).clamp(0, 1)
    cfg = WhiteBoxConfig(n_edits=2, base_channels=4, image_size=16)

    def cost(shift):
        res = pretrain_objective(_Shifted(policy, shift), inputs, refs, cfg, torch.Generator().manual_seed(5), samples=2)
        return res.cost.mean()

    shift = (0.1 * torch.randn(N_FILTERS + N_PARAMS, generator=torch.Generator().manual_seed(1))).double().requires_grad_()
    assert torch.autograd.gradcheck(cost, (shift,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.slow
def test_pretraining_gradient_is_unbiased_for_the_expected_cost():
    """One edit: E[C] = sum_F pi(F) C(F) is computable by enumerating the 8 filters. The estimator's
    gradient (path-wise + leave-one-out score function), averaged over many draws, equals its gradient."""
    torch.set_num_threads(1)
    policy = _tiny_policy(1, seed=2)
    refs = random_crops(3, 1, 16)[:1].double()
    inputs = quantize_8bit(global_exposure(refs.float(), torch.tensor([[-1.0]]))).double()
    cfg = WhiteBoxConfig(n_edits=1, base_channels=4, image_size=16)
    shift0 = torch.zeros(N_FILTERS + N_PARAMS, dtype=torch.float64)
    shift0[:N_FILTERS] = torch.linspace(-1, 1, N_FILTERS, dtype=torch.float64)  # a far from uniform pi_1

    def exact(shift):
        pol = _Shifted(policy, shift)
        zeros = torch.zeros(1, N_FILTERS, dtype=torch.float64)
        logits, raw = pol(inputs, zeros, torch.zeros(1, dtype=torch.long))
        probs, params = torch.softmax(logits, 1), pol.filter_params(raw)
        total = entropy_penalty(probs, cfg.entropy_penalty)
        for f in range(N_FILTERS):
            out = apply_chosen_filters(inputs, torch.tensor([f]), params)
            c = 10 * torch.log10((out.clamp(0, 1) - refs).pow(2).mean() + 1e-4) + cfg.range_penalty * range_penalty(out)
            total = total + probs[:, f] * c
        return total.sum()

    s = shift0.clone().requires_grad_()
    want = torch.autograd.grad(exact(s), s)[0]
    s = shift0.clone().requires_grad_()
    res = pretrain_objective(_Shifted(policy, s), inputs, refs, cfg, torch.Generator().manual_seed(0), samples=2000)
    got = torch.autograd.grad(res.loss, s)[0]
    cos = float(torch.nn.functional.cosine_similarity(got, want, dim=0))
    assert cos > 0.97 and abs(float(got.norm() / want.norm()) - 1) < 0.15, (cos, float(got.norm() / want.norm()))
    # the filter-choice part alone (logits) is only right through the score-function term
    lg, lw = got[:N_FILTERS], want[:N_FILTERS]
    assert float(torch.nn.functional.cosine_similarity(lg, lw, dim=0)) > 0.9, (lg, lw)


@pytest.mark.slow
def test_pretraining_learns_to_undo_a_known_underexposure():
    """Inputs are their references 1.5 EV too dark: after a short supervised pre-training the agent's
    greedy edit brightens them and brings them much closer to the references."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    refs = random_crops(3, 2, size=16) * 0.8
    inputs = quantize_8bit(global_exposure(refs, torch.full((refs.shape[0], 1), -1.5)))
    agent = WhiteBoxAgent(WhiteBoxConfig(n_edits=2, base_channels=8, image_size=16, pretrain_samples=2), batch_size=8)
    for g in agent.opt_policy.param_groups:
        g["lr"] = 3e-3

    def mse():
        with torch.no_grad():
            return float((rollout(agent.policy, inputs, greedy=True).final - refs).pow(2).mean())

    mse0 = mse()
    first = agent.pretrain_step(torch.arange(8), inputs, refs)
    for _ in range(24):
        m = agent.pretrain_step(torch.arange(8), inputs, refs)
    assert m["pretrain_psnr"] > first["pretrain_psnr"] + 5, (first, m)
    assert mse() < 0.3 * mse0, (mse0, mse())
    with torch.no_grad():  # the mean brightness moves most of the way to the references'
        out = rollout(agent.policy, inputs, greedy=True).final
    assert abs(float(out.mean() - refs.mean())) < 0.5 * float(refs.mean() - inputs.mean())


def test_policy_average_matches_loop_and_is_exported(tmp_path):
    """``--policy-ema``: after supervised and RL steps the average is the running mean of the loop
    below, and the exported model (and nothing else) is that average."""
    torch.manual_seed(0)
    beta = 0.7
    refs = random_crops(3, 2, size=16)
    inputs = quantize_8bit(global_exposure(refs, torch.full((refs.shape[0], 1), -1.0)))
    agent = WhiteBoxAgent(WhiteBoxConfig(n_edits=2, buffer_size=8, base_channels=4, image_size=16, lr_policy=3e-3,
                                         pretrain_samples=2, policy_ema=beta), batch_size=4)
    ref = [p.detach().clone() for p in agent.policy.parameters()]
    g = torch.Generator().manual_seed(1)
    for i in range(5):
        idx = torch.arange(4) + 4 * (i % 2)
        if i < 3:
            agent.pretrain_step(idx, inputs, refs)
        else:
            agent.train_step(idx, inputs, nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1)), g)
        ref = [beta * r + (1 - beta) * p.detach() for r, p in zip(ref, agent.policy.parameters())]
    for r, a in zip(ref, agent.policy_avg.parameters()):
        assert torch.allclose(r, a, atol=1e-6)
    assert not all(torch.equal(a, p) for a, p in zip(agent.policy_avg.parameters(), agent.policy.parameters()))
    agent.save_model(tmp_path)
    exported = WhiteBoxMethod(tmp_path).policy
    for r, e in zip(ref, exported.parameters()):
        assert torch.allclose(r, e, atol=1e-6)
    with pytest.raises(ValueError, match="policy_ema"):
        WhiteBoxConfig(policy_ema=1.0)


# -- resume and the exported model -------------------------------------------------------------


def _tiny_trainer(run, tmp_path, steps=8, p_steps=4, ckpt_every=7, pretrain_steps=0, policy_ema=0.0):
    targets = random_crops(0, 2, 16)
    inputs = random_crops(1, 2, 16)
    acfg = WhiteBoxConfig(n_edits=2, buffer_size=8, base_channels=4, image_size=16, lr_policy=1e-3, lr_value=1e-3,
                          pretrain_samples=2, policy_ema=policy_ema)
    tcfg = TrainConfig(steps=steps, p_steps=p_steps, d_steps=2, disc_base_channels=4, batch_size=4, image_size=16,
                       seed=3, sample_every=0, ckpt_every=ckpt_every, pretrain_steps=pretrain_steps)
    torch.manual_seed(123)
    refs = (inputs * 1.3).clamp(0, 1) if pretrain_steps else None
    return Trainer(WhiteBoxAgent(acfg, 4), tcfg, inputs, targets, tmp_path / run, references=refs)


def test_pretraining_resume_matches_uninterrupted_run(tmp_path):
    """Checkpoint at step 7 of 10 supervised steps (then 1 + 1 RL): the filter draws and the weight
    average continue where they were."""
    straight, second = straight_and_resumed(
        lambda run: _tiny_trainer(run, tmp_path, steps=1, p_steps=1, pretrain_steps=10, policy_ema=0.5))
    assert second.step == 12
    assert_same_training_state(straight, second)
    assert "policy_ema" in second.agent.networks()
    with (tmp_path / "resumed" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows] == ["-1"] * 10 + ["0", "1"]
    assert all(float(r["pretrain_psnr"]) > 0 for r in rows[:10])


def test_resume_matches_uninterrupted_run(tmp_path):
    """Stop after 7 of 12 steps, resume in a fresh process state: same weights and buffer as a straight run."""
    straight, second = straight_and_resumed(lambda run: _tiny_trainer(run, tmp_path))
    assert second.step == 12
    assert_same_training_state(straight, second)
    with (tmp_path / "resumed" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["step"])) for r in rows] == list(range(12))  # each step exactly once
    assert rows[-1]["use_white_balance"] != ""  # the agent's own columns are logged
    # the exported model retouches, found from the run directory
    method = get_method("exposure", model=str(tmp_path / "resumed"))
    recipe = method.plan(torch.rand(1, 3, 50, 70))
    assert len(recipe.ops) == 2 and recipe.method["name"] == "exposure"


def test_plan_returns_valid_filter_recipe(tmp_path):
    torch.manual_seed(0)
    agent = WhiteBoxAgent(WhiteBoxConfig(n_edits=5, buffer_size=8, base_channels=4), batch_size=4)
    with torch.no_grad():  # push the parameter head into its tails so clamping to the ranges matters
        agent.policy.trunk.fc[-1].weight.mul_(200.0)
    agent.save_model(tmp_path / "m", {"name": "tiny"})
    method = WhiteBoxMethod(tmp_path / "m")
    img = random_crops(2, 1, 64)[:1]
    recipe = method.plan(img)
    assert len(recipe.ops) == 5
    for op in recipe.ops:
        assert op["op"] == "filter" and op["name"] in FILTERS and len(op["params"]) == FILTERS[op["name"]].n_params
    Recipe.from_json(recipe.to_json()).validate()  # every parameter inside its documented range
    assert recipe.method == {"name": "exposure", "model": "tiny", "model_path": str(tmp_path / "m")}
    # the recipe re-renders what the agent did on the thumbnail
    traj = method.decide(img)
    assert [FILTER_NAMES[int(s.action[0])] for s in traj.steps] == [op["name"] for op in recipe.ops]
    out = render(recipe, img)
    assert torch.allclose(out, traj.final, atol=1e-4)
    # deterministic
    assert method.plan(img).ops == recipe.ops


def test_method_reports_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no white-box model"):
        WhiteBoxMethod(tmp_path / "nothing")
