"""PixelRL: network, pixel-wise A2C maths, reward map convolution, actions, learning, recipes, commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepexposure.pixelrl.a2c import RewardMapConv, a2c_losses, policy_terms, returns, sample_actions
from deepexposure.pixelrl.actions import DENOISE_ACTIONS, ENHANCE_ACTIONS, enhance_action, luminance601
from deepexposure.pixelrl.model import load_model, run_agent, save_model
from deepexposure.pixelrl.net import PixelRLNet, PixelRLNetConfig, receptive_field
from deepexposure.pixelrl.tasks import Task, add_noise, lab_input, overlay_text, parse_noise
from tests.toy import photo


def _support(net: PixelRLNet, which: str, size: int = 49) -> tuple[int, int]:
    """Rows and columns of the input that reach the centre output (gradient != 0)."""
    x = torch.rand(1, net.config.in_channels, size, size, dtype=torch.float64, requires_grad=True)
    logits, v, _ = net.double()(x)
    out = v if which == "value" else logits
    out[0, 0, size // 2, size // 2].backward()
    g = x.grad[0].abs().sum(0) > 0
    return int(g.any(1).sum()), int(g.any(0).sum())


class TestNet:
    def test_shapes(self):
        net = PixelRLNet(PixelRLNetConfig(in_channels=3, n_actions=13, channels=8))
        logits, v, h = net(torch.rand(2, 3, 20, 27))
        assert logits.shape == (2, 13, 20, 27) and v.shape == (2, 1, 20, 27) and h.shape == (2, 8, 20, 27)
        logits2, _, h2 = net(torch.rand(2, 3, 20, 27), h)
        assert logits2.shape == logits.shape and not torch.equal(h2, h)

    def test_receptive_field_33(self):
        torch.manual_seed(0)
        net = PixelRLNet(PixelRLNetConfig(channels=4))
        assert _support(net, "value") == (33, 33) == (receptive_field(False),) * 2
        assert _support(net, "policy") == (35, 35) == (receptive_field(True),) * 2  # the convGRU's 3x3 input conv
        net_plain = PixelRLNet(PixelRLNetConfig(channels=4, conv_gru=False))
        assert _support(net_plain, "policy") == (33, 33)

    def test_paper_channels(self):
        net = PixelRLNet(PixelRLNetConfig())
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(c.kernel_size == (3, 3) for c in convs)
        assert [c.dilation[0] for c in net.trunk if isinstance(c, torch.nn.Conv2d)] == [1, 2, 3, 4]
        assert net.pi_out.out_channels == 9 and net.v_head[-1].out_channels == 1 and net.trunk[0].out_channels == 64


class TestA2C:
    def test_identity_filter_equals_plain_return(self):
        g = torch.Generator().manual_seed(0)
        rewards = [torch.randn(2, 1, 9, 11, generator=g) for _ in range(4)]
        boot = torch.randn(2, 1, 9, 11, generator=g)
        w = RewardMapConv(33)
        for a, b in zip(returns(rewards, 0.9, boot, w), returns(rewards, 0.9, boot, None)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

    def test_returns_and_losses_match_a_loop_over_pixels(self):
        g = torch.Generator().manual_seed(1)
        T, H, W, A, gamma = 3, 4, 5, 9, 0.95
        rewards = [torch.randn(1, 1, H, W, generator=g, dtype=torch.float64) for _ in range(T)]
        w = RewardMapConv(3).double()
        with torch.no_grad():
            w.weight.copy_(torch.rand(1, 1, 3, 3, generator=g, dtype=torch.float64))
        logits = [torch.randn(1, A, H, W, generator=g, dtype=torch.float64) for _ in range(T)]
        values = [torch.randn(1, 1, H, W, generator=g, dtype=torch.float64) for _ in range(T)]
        acts = [sample_actions(lg, g) for lg in logits]
        R = returns(rewards, gamma, None, w)
        terms = [policy_terms(lg, a) for lg, a in zip(logits, acts)]
        L = a2c_losses([t[0] for t in terms], values, [t[1] for t in terms], R, value_coef=0.5, beta=0.01)
        # the loop: eq. (12)/(13) one pixel at a time, w_{i-j} with zero outside the image
        k = w.weight.detach()[0, 0].numpy()
        Rl = np.zeros((H, W))
        pol = val = ent = 0.0
        ret_loop = []
        for t in reversed(range(T)):
            new = np.zeros((H, W))
            for y in range(H):
                for x in range(W):
                    s = 0.0
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            if 0 <= y + dy < H and 0 <= x + dx < W:
                                s += k[dy + 1, dx + 1] * gamma * Rl[y + dy, x + dx]
                    new[y, x] = float(rewards[t][0, 0, y, x]) + s
            Rl = new
            ret_loop.insert(0, Rl)
        for t in range(T):
            p = torch.softmax(logits[t][0], 0).numpy()
            for y in range(H):
                for x in range(W):
                    a = int(acts[t][0, y, x])
                    adv = ret_loop[t][y, x] - float(values[t][0, 0, y, x])
                    pol -= np.log(p[a, y, x]) * adv / (H * W)
                    val += adv**2 / (H * W)
                    ent += (p[:, y, x] * np.log(p[:, y, x])).sum() / (H * W)
        for t in range(T):
            np.testing.assert_allclose(R[t][0, 0].detach().numpy(), ret_loop[t], atol=1e-12)
        np.testing.assert_allclose([float(L.policy.detach()), float(L.value.detach()), float(L.entropy.detach())], [pol, val, ent], rtol=1e-10)
        assert abs(float(L.total.detach()) - (pol + 0.5 * val + 0.01 * ent)) < 1e-9

    def test_w_gets_gradient_from_both_terms_of_eq17(self):
        rewards = [torch.rand(1, 1, 6, 6) for _ in range(2)]
        w = RewardMapConv(5)
        logits = torch.randn(1, 9, 6, 6, requires_grad=True)
        v = torch.randn(1, 1, 6, 6, requires_grad=True)
        logp, ent = policy_terms(logits, sample_actions(logits, torch.Generator().manual_seed(0)))
        R = returns(rewards, 0.9, None, w)
        a2c_losses([logp, logp], [v, v], [ent, ent], R).total.backward()
        assert w.weight.grad is not None and w.weight.grad.abs().sum() > 0
        assert v.grad is not None and logits.grad is not None

    def test_sampling_follows_the_policy(self):
        logits = torch.log(torch.tensor([0.1, 0.6, 0.3])).view(1, 3, 1, 1).expand(1, 3, 100, 100).contiguous()
        a = sample_actions(logits, torch.Generator().manual_seed(0))
        freq = torch.bincount(a.flatten(), minlength=3).float() / a.numel()
        torch.testing.assert_close(freq, torch.tensor([0.1, 0.6, 0.3]), atol=0.02, rtol=0)
        assert torch.equal(sample_actions(logits, greedy=True), torch.ones(1, 100, 100, dtype=torch.long))


class TestActions:
    def test_table1_against_opencv(self):
        cv2 = pytest.importorskip("cv2")
        x = np.random.default_rng(0).random((23, 31)).astype(np.float32)
        refs = [cv2.boxFilter(x, -1, (5, 5)), cv2.bilateralFilter(x, 5, 1.0, 5.0), cv2.bilateralFilter(x, 5, 0.1, 5.0),
                cv2.medianBlur(x, 5), cv2.GaussianBlur(x, (5, 5), 1.5), cv2.GaussianBlur(x, (5, 5), 0.5),
                x + 1 / 255, x - 1 / 255, x]
        t = torch.from_numpy(x)[None, None]
        assert DENOISE_ACTIONS.n == len(refs) == 9
        for k, ref in enumerate(refs):
            out = DENOISE_ACTIONS.apply(t, torch.full((1, 23, 31), k))[0, 0].numpy()
            np.testing.assert_allclose(out, np.clip(ref, 0, 1), atol=3e-4, err_msg=DENOISE_ACTIONS.names[k])

    def test_pixel_takes_its_own_action(self):
        x = torch.rand(1, 1, 12, 12)
        a = torch.randint(0, 9, (1, 12, 12), generator=torch.Generator().manual_seed(3))
        out = DENOISE_ACTIONS.apply(x, a)
        for k in range(9):
            full = DENOISE_ACTIONS.apply(x, torch.full_like(a, k))
            sel = (a == k).unsqueeze(1)
            assert torch.equal(out[sel], full[sel])

    def test_table7(self):
        x = torch.rand(2, 3, 8, 9, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
        assert ENHANCE_ACTIONS.n == 13 and ENHANCE_ACTIONS.names[-1] == "nothing"
        torch.testing.assert_close(luminance601(enhance_action(x, "saturation", 1.05)), luminance601(x))
        torch.testing.assert_close(luminance601(enhance_action(x, "contrast", 0.95)).mean((-2, -1)), luminance601(x).mean((-2, -1)))
        torch.testing.assert_close(enhance_action(x, "brightness", 0.95), 0.95 * x)
        rb = enhance_action(x, "red+blue", 1.05)
        torch.testing.assert_close(rb[:, [0, 2]], 1.05 * x[:, [0, 2]])
        torch.testing.assert_close(rb[:, 1], x[:, 1])
        sat0 = enhance_action(x, "saturation", 0.0)  # k = 0: grey at the pixel's luminance, the skimage definition
        from skimage.color import rgb2gray

        assert torch.allclose(sat0[0, 0], luminance601(x)[0, 0]) and rgb2gray is not None

    def test_lab_input_against_skimage(self):
        from skimage.color import rgb2lab

        x = photo("coffee")[..., :40, :50]
        ref = rgb2lab(x[0].permute(1, 2, 0).double().numpy())
        got = (lab_input(x)[0].permute(1, 2, 0) * torch.tensor([100.0, 110.0, 110.0])).numpy()
        np.testing.assert_allclose(got, ref, atol=0.05)


class TestTasks:
    def test_noise_models(self):
        clean = torch.full((4, 1, 64, 64), 0.5)
        g = torch.Generator().manual_seed(0)
        std = float((add_noise(clean, parse_noise("gaussian:25"), g) - clean).std())
        assert abs(std * 255 - 25) < 1.0
        sp = add_noise(clean, parse_noise("saltpepper:0.3"), g)
        assert abs(float(((sp == 0) | (sp == 1)).float().mean()) - 0.3) < 0.03
        assert parse_noise("gaussian:5-50") .hi == 50 and parse_noise("poisson").lo == 30
        with pytest.raises(ValueError, match="noise must be one of"):
            parse_noise("speckle:3")

    def test_text_overlay_is_black_or_white(self):
        clean = torch.full((2, 1, 60, 80), 0.5)
        out = overlay_text(clean, torch.Generator().manual_seed(0))
        changed = out != clean
        assert 0.02 < float(changed.float().mean()) < 0.9
        assert set(out[changed].unique().tolist()) <= {0.0, 1.0}

    def test_reward_eq19_sums_to_error_decrease(self):
        task = Task.make("denoise")
        target, s0 = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
        s1 = DENOISE_ACTIONS.apply(s0, torch.zeros(1, 8, 8, dtype=torch.long))
        r = task.reward(s0, s1, target)
        assert abs(float(r.sum()) - 255 * float((target - s0).pow(2).sum() - (target - s1).pow(2).sum())) < 1e-3


def _toy_trainer(tmp_path, steps, pretrain_steps=0):
    from deepexposure.pixelrl.train import PixelRLConfig, PixelRLTrainer

    cfg = PixelRLConfig(steps=steps, batch_size=4, image_size=16, t_max=1, channels=8, lr=1e-2, beta=1e-3, rmc=False, sample_every=0,
                        ckpt_every=1000, conv_gru=False, pretrain_steps=pretrain_steps)
    torch.manual_seed(0)
    tr = PixelRLTrainer(cfg, None, tmp_path / "run")
    g = torch.Generator().manual_seed(5)

    def batch():  # one fixed noise pattern: every pixel 2/255 too bright, which '-1' (index 7) removes
        clean = 0.2 + 0.6 * torch.rand(4, 1, 16, 16, generator=g)
        return clean + 2 / 255, clean

    tr.batch = batch
    return tr


@pytest.mark.slow
def test_toy_learning_picks_the_action_that_removes_the_noise(tmp_path):
    tr = _toy_trainer(tmp_path, 40)
    x = 0.2 + 0.6 * torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(9)) + 2 / 255

    def p_minus():
        with torch.no_grad():
            return float(torch.softmax(tr.net(x)[0], 1)[:, 7].mean())

    before = p_minus()
    for _ in range(40):
        tr.train_one()
    after = p_minus()
    assert before < 0.2 and after > 0.5, (before, after)


def test_warmup_learns_the_action_that_removes_the_noise(tmp_path):
    """The supervised warm-up (relaxed episodes, final error) on the same toy: '-1' becomes the greedy choice."""
    tr = _toy_trainer(tmp_path, 1, pretrain_steps=30)
    x = 0.2 + 0.6 * torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(9)) + 2 / 255

    def restored():  # share of the pixels whose greedy agent takes '-1' (index 7)
        with torch.no_grad():
            return float((run_agent(tr.net, tr.task, x).maps[0] == 7).float().mean())

    before = restored()
    rows = [tr.train_one() for _ in range(30)]
    assert {r["phase"] for r in rows} == {"warmup"} and rows[-1]["tau"] < rows[0]["tau"]
    after = restored()
    assert before < 0.3 and after > 0.9, (before, after)


def test_warmup_hands_its_tempered_policy_to_the_rl_phase(tmp_path):
    """After the last warm-up episode the output layer is divided by that episode's temperature
    (the same first episode without the hand-over, in a run one episode longer, is the reference)."""
    nets = []
    for n in (1, 2):
        tr = _toy_trainer(tmp_path / str(n), 1, pretrain_steps=n)
        tr.cfg.pretrain_tau = 0.5
        row = tr.train_one()
        assert row["tau"] == 0.5
        nets.append(dict(tr.net.named_parameters()))
    folded, plain = nets
    for k in plain:
        scale = 2.0 if k.startswith("pi_out.") else 1.0
        assert torch.allclose(folded[k], scale * plain[k], atol=1e-7), k


def test_relaxed_episode_becomes_the_greedy_run_as_tau_falls():
    from deepexposure.pixelrl.train import relaxed_episode

    for name in ("denoise", "enhance"):
        task = Task.make(name, 3)
        torch.manual_seed(0)
        net = PixelRLNet(PixelRLNetConfig(task.in_channels, task.actions.n, 4)).double()
        with torch.no_grad():
            net.pi_out.weight.mul_(1e4)  # wide margins between the logits: no near-ties
        x = torch.rand(2, task.actions.channels, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        hard = run_agent(net, task, x).out
        with torch.no_grad():
            soft = relaxed_episode(net, task, x, 1e-3)
            flat = relaxed_episode(net, task, x, 1e6)
        assert float((soft - hard).abs().max()) < 1e-6, name
        assert float((flat - hard).abs().max()) > 1e-3  # a flat mix is not the greedy run


def test_relaxed_episode_gradient():
    from deepexposure.pixelrl.train import final_error, relaxed_episode

    task = Task.make("enhance", 2)
    torch.manual_seed(0)
    net = PixelRLNet(PixelRLNetConfig(3, task.actions.n, 3, conv_gru=True)).double()
    x = 0.1 + 0.8 * torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = 0.1 + 0.8 * torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    bias = net.pi_out.bias

    def f(b):
        with torch.no_grad():
            bias.copy_(b)
        return final_error(task, relaxed_episode(net, task, x, 0.5), y)

    b0 = torch.randn(task.actions.n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    loss = f(b0)
    (g,) = torch.autograd.grad(loss, bias)
    eps = 1e-6
    num = torch.stack([(f(b0 + eps * e) - f(b0 - eps * e)) / (2 * eps) for e in torch.eye(task.actions.n, dtype=torch.float64)])
    assert torch.allclose(g, num, rtol=1e-5, atol=1e-8), (g, num)


def _tiny_model(tmp_path, task="denoise", channels=4, noise=None):
    t = Task.make(task)
    torch.manual_seed(0)
    net = PixelRLNet(PixelRLNetConfig(t.in_channels, t.actions.n, channels))
    return save_model(tmp_path / f"m-{task}{noise or ''}", net, t, {"name": "tiny", "noise": noise})


def test_noise_sigma_against_skimage():
    from skimage.restoration import estimate_sigma

    from deepexposure.pixelrl.tasks import noise_sigma

    clean = photo("camera")[:, :1, :128, :128]
    for sigma in (5.0, 25.0, 50.0):
        noisy = clean + sigma / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(int(sigma)))
        ours = float(noise_sigma(noisy)[0])
        ref = 255 * float(estimate_sigma(noisy[0, 0].double().numpy()))  # the same estimate on a Daubechies-2 band
        assert abs(ours - ref) < 0.05 * ref, (sigma, ours, ref)
        assert abs(ours - sigma) < 0.15 * sigma + 1.0, (sigma, ours)


def test_a_set_of_denoisers_chooses_by_the_estimated_noise(tmp_path):
    from deepexposure.pixelrl.model import choose_model, load_model

    models = [load_model(_tiny_model(tmp_path, noise=f"gaussian:{s}"), "denoise") for s in (15, 25, 50)]
    clean = torch.full((1, 1, 64, 64), 0.5)
    for sigma, want in ((12.0, 15), (28.0, 25), (45.0, 50)):
        noisy = clean + sigma / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
        m, est = choose_model(models, noisy)
        assert m.config["noise"] == f"gaussian:{want}" and abs(est - sigma) < 0.1 * sigma, (sigma, est)
    assert choose_model(models[:1], clean) == (models[0], None)


def test_model_folder_round_trip_and_bad_files(tmp_path):
    from deepexposure.modelfiles import ModelFileError

    d = _tiny_model(tmp_path)
    m = load_model(d, "denoise")
    assert m.config["task"] == "denoise" and m.net.config.channels == 4
    cfg = json.loads((d / "config.json").read_text())
    cfg["network"]["channels"] = 5
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="model.safetensors"):
        load_model(d, "denoise")
    cfg["network"]["channels"] = 4
    cfg["actions"] = ["box"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="actions"):
        load_model(d, "denoise")


@pytest.mark.parametrize("task", ["denoise", "enhance"])
def test_apply_reproduces_the_retouch(tmp_path, task):
    from deepexposure.pipeline import retouch_tensor
    from deepexposure.pixelrl.method import PixelRLMethod, PixelRLRestorer
    from deepexposure.recipe import Recipe, render

    d = _tiny_model(tmp_path, task)
    method = PixelRLMethod(model=d, work_size=48) if task == "enhance" else PixelRLRestorer(task, d)
    img = photo("chelsea")[..., :60, :90]
    out, recipe = retouch_tensor(method, img)
    again = render(Recipe.from_json(recipe.to_json()), img)
    assert torch.equal(out, again)
    op = recipe.ops[0]
    assert op["op"] == "pixelrl_actions" and len(op["counts"]) == Task.make(task).t_max
    assert op.get("upsample", "nearest") == ("guided" if task == "enhance" else "nearest")
    if task == "denoise":  # at full resolution the recipe's render is exactly the agents' own run
        direct = run_agent(method.models[0].net, method.models[0].task, img).out
        assert torch.equal(out, direct)


class TestGuidedTransfer:
    """The enhance op's upsampling: the working copy's edit carried to the full photo (recipe_op.guided_transfer)."""

    def _edge_photo(self):
        # a dark and a bright half split at column 97 of 200 (not on the 50 px grid), with texture
        g = torch.Generator().manual_seed(0)
        full = torch.full((1, 3, 120, 200), 0.25) + 0.05 * torch.rand(1, 3, 120, 200, generator=g)
        full[..., 97:] += 0.4
        return full

    def test_untouched_pixels_stay_exact(self):
        from deepexposure.pixelrl.recipe_op import guided_transfer
        from deepexposure.resize import resize_exact

        full = self._edge_photo()
        small = resize_exact(full, (30, 50))
        assert torch.equal(guided_transfer(small, small.clone(), full), full)

    def test_gains_carry_over_exactly_and_contrast_closely(self):
        from deepexposure.pixelrl.actions import enhance_action
        from deepexposure.pixelrl.recipe_op import guided_transfer
        from deepexposure.resize import resize_exact

        full = self._edge_photo()
        small = resize_exact(full, (30, 50))
        for kind in ("brightness", "red+green", "contrast"):
            out = guided_transfer(small, enhance_action(enhance_action(small, kind, 1.05), kind, 1.05), full)
            want = enhance_action(enhance_action(full, kind, 1.05), kind, 1.05)
            assert (out - want).abs().max() < (1e-4 if kind != "contrast" else 2 / 255), kind

    def test_a_local_edit_follows_the_full_resolution_edge(self):
        """Brightening the dark half only: the guided transfer puts the step near the photo's own edge
        (a few per cent off within a grid pixel or two of it); nearest-neighbour maps put it on the
        coarse grid (the blocks of the old render: one column 10 % off)."""
        from deepexposure.pixelrl.recipe_op import actions_op, render_actions_op

        task = Task.make("enhance")
        full = self._edge_photo()
        bright = task.actions.names.index("brightness x1.05")
        nothing = task.actions.names.index("nothing")
        small_dark = torch.zeros(1, 30, 50, dtype=torch.long)
        small_dark[..., :24] = 1  # column 24 of 50 = 96..100 of 200: the edge pixel's block is mixed
        maps = [torch.where(small_dark.bool(), bright, nothing).to(torch.uint8) for _ in range(6)]
        truth = full.clone()
        truth[..., :97] = (full[..., :97] * 1.05**6).clamp(0, 1)
        errs = {}
        for up in ("nearest", "guided"):
            out = render_actions_op(actions_op(task, maps, upsample=up), full)
            errs[up] = (out - truth).abs().amax(dim=(0, 1, 2))  # per column
        g, n = errs["guided"], errs["nearest"]
        assert g[:70].max() < 1e-3 and g[125:].max() < 1e-3  # a gain is exact away from the edge, texture included
        assert n.max() > 0.09 and n.max() > 3 * g.max()  # the grid block that straddles the edge

    def test_old_ops_render_nearest_and_bad_values_are_refused(self):
        from deepexposure.pixelrl.recipe_op import OpError, actions_op, validate_actions_op

        task = Task.make("enhance")
        maps = [torch.zeros(1, 8, 8, dtype=torch.uint8)]
        assert "upsample" not in actions_op(task, maps)  # old layout, rendered as before
        op = actions_op(task, maps, upsample="guided")
        validate_actions_op(op, "r.json")
        with pytest.raises(OpError, match="r.json: upsample"):
            validate_actions_op({**op, "upsample": "bicubic"}, "r.json")
        with pytest.raises(OpError, match="enhance task"):
            validate_actions_op({**actions_op(Task.make("denoise"), maps), "upsample": "guided"}, "r.json")


@pytest.mark.slow
def test_tiled_inference_equals_whole(tmp_path):
    m = load_model(_tiny_model(tmp_path), "denoise")
    x = torch.rand(1, 1, 150, 170, generator=torch.Generator().manual_seed(0))
    a = run_agent(m.net, m.task, x)
    b = run_agent(m.net, m.task, x, tile=120)
    assert all(torch.equal(p, q) for p, q in zip(a.maps, b.maps))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "deepexposure", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_commands_train_resume_denoise_restore_apply_eval(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee", "chelsea"):
        arr = (photo(name)[0, :, :64, :96].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        Image.fromarray(arr).save(photos / f"{name}.png")
    run = tmp_path / "run"
    common = ["train", "--algo", "pixelrl", "--task", "denoise", "--inputs", photos, "--out", run, "--batch-size", "2",
              "--image-size", "24", "--channels", "4", "--photo-size", "96", "--ckpt-every", "2", "--quiet", "--seed", "3"]
    r = _cli(*common, "--steps", "2")
    assert r.returncode == 0, r.stderr
    r = _cli(*common, "--steps", "3", "--resume")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "model" / "config.json").read_text())["trained_steps"] == 3
    # --export-step: the last checkpoint's model is RUN/model bit for bit, an earlier one differs
    from safetensors.torch import load_file

    for n in (2, 3):
        r = _cli("train", "--out", run, "--export-step", n, "--export-to", tmp_path / f"m{n}")
        assert r.returncode == 0, r.stderr
    ref, a, b = (load_file(str(d / "model.safetensors")) for d in (run / "model", tmp_path / "m3", tmp_path / "m2"))
    assert ref.keys() == a.keys() and all(torch.equal(ref[k], a[k]) for k in ref)
    assert any(not torch.equal(ref[k], b[k]) for k in ref)
    assert json.loads((tmp_path / "m2" / "config.json").read_text())["trained_steps"] == 2
    out = tmp_path / "out"
    r = _cli("denoise", photos, "-o", out, "--model", run, "--explain", "--recipe", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (out / "coffee.explain.jpg").exists() and (out / "coffee.png.recipe.json").exists()
    r = _cli("apply", out / "coffee.png.recipe.json", photos / "coffee.png", "-o", tmp_path / "again.png")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(out / "coffee.png")), np.asarray(Image.open(tmp_path / "again.png")))
    r = _cli("restore", photos / "chelsea.png", "-o", tmp_path / "rest", "--model", run, "--quiet")
    assert r.returncode == 0 and (tmp_path / "rest" / "chelsea.png").exists(), r.stderr
    r = _cli("denoise", photos, "-o", tmp_path / "x", "--noise", "poisson")
    assert r.returncode == 2 and "no shipped model for poisson" in r.stderr
    r = _cli("eval", "--task", "denoise", "--clean", photos, "--out", tmp_path / "ev", "--model", run, "--long-edge", "64",
             "--methods", "noisy,gaussian,pixelrl", "--noise", "gaussian:50", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "ev" / "eval.json").read_text())["rows"]["gaussian:50"]
    assert rows["gaussian"]["psnr"] > rows["noisy"]["psnr"] and set(rows) == {"noisy", "gaussian", "pixelrl"}


def test_shipped_denoisers_are_chosen_by_the_photo_noise():
    from deepexposure.pixelrl.method import PixelRLRestorer
    from deepexposure.pixelrl.model import SHIPPED_DENOISERS

    method = PixelRLRestorer("denoise")
    assert [m.path.name for m in method.models] == list(SHIPPED_DENOISERS.values())
    clean = photo("camera")[..., :96, :96]
    for sigma, name in ((15, "gaussian15"), (50, "gaussian50")):
        noisy = add_noise(clean, parse_noise(f"gaussian:{sigma}"), torch.Generator().manual_seed(0))
        recipe = method.plan(noisy)
        assert recipe.method["model"] == f"pixelrl-denoise-{name}", recipe.method
        assert any(f"gaussian:{sigma}" in n for n in recipe.notes), recipe.notes


def test_nlmeans_baseline_without_a_noise_level():
    """Restoration has no noise level: NL-means estimates it (once a crash on skimage's per-channel list)."""
    from deepexposure.pixelrl.evaluate import baseline

    clean = photo("camera")[..., :48, :48]
    noisy = overlay_text(clean, torch.Generator().manual_seed(0))
    out = baseline("nlmeans", noisy, None)
    assert out.shape == noisy.shape and float((out - noisy).abs().max()) > 0


def test_shipped_restorer_is_a_restore_model():
    from deepexposure.pixelrl.model import load_model

    m = load_model(None, "restore")
    assert m.config["task"] == "restore" and m.task.t_max == 15 and m.path.name == "pixelrl-restore"
