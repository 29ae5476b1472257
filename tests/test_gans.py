"""The GAN family, BiGAN and the VAE: each learns on small synthetic data (a measured distance to
the data drops well below its start), plus the losses' exact forms and the models' contracts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tinygan as tg
from tinygan.evaluation import load_images
from tinygan.models import (
    DCGAN,
    DIVERGENCES,
    FGAN,
    GAN,
    VAE,
    WGAN,
    BiGAN,
    PairDiscriminator,
    binarize,
    discriminator_loss,
    gaussian_kl,
    generator_loss,
    mlp,
)
from tinygan.nn import functional as F
from tinygan.train import train


def ring(n=2000, k=8, seed=0):
    """Points around k centres on a circle of radius 2 (std 0.2), float32 (n, 2)."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * rng.integers(0, k, n) / k
    centres = 2 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return (centres + 0.2 * rng.standard_normal((n, 2))).astype(np.float32)


def energy_distance(a, b):
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (0 iff the distributions agree)."""

    def mean_dist(p, q):
        return np.sqrt(((p[:, None] - q[None]) ** 2).sum(-1)).mean()

    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


def toy_gan(seed=0, **kw):
    """A small GAN on 2-D points: 2-D noise, 64 hidden units."""
    rng = np.random.default_rng(seed)
    G = mlp([2, 64, 64, 2], batch_norm=True, rng=rng)
    D = mlp([2, 64, 64, 1], activation="leaky_relu", rng=rng)
    kw.setdefault("noise", "normal")
    kw.setdefault("output_range", (-4.0, 4.0))  # data in [0, 1] <-> the plane's [-4, 4]
    return GAN(G, D, noise_dim=2, lr_g=1e-3, lr_d=1e-3, **kw)


def test_a_run_is_not_resumed_with_another_loss(tmp_path):
    """Regression: --resume with another --divergence, --n-critic or clip value went on
    silently as another model (only InfoGAN recorded its recipe)."""
    from tinygan.serialization import CheckpointError

    data = np.random.default_rng(0).random((64, 2), dtype=np.float32)
    flags = dict(steps=2, batch_size=16, seed=1, progress=False, checkpoint=tmp_path / "c.npz")
    train(toy_gan(objective="kl"), data, **flags)
    for changed in (dict(objective="gan"), dict(objective="kl", n_critic=2),
                    dict(objective="kl", generator_loss="minimax")):  # fmt: skip
        with pytest.raises(CheckpointError, match=r"written by a run with .*'recipe'"):
            train(toy_gan(**changed), data, resume=True, **{**flags, "steps": 3})
    history = train(toy_gan(objective="kl"), data, resume=True, **{**flags, "steps": 3})
    assert [h["step"] for h in history] == [1, 2, 3]


def learns(model, data, steps, batch_size=64, seed=0):
    """Energy distance of 1,000 samples to the data before and after training."""
    to_unit = (data + 4) / 8  # the models take data in [0, 1]
    before = energy_distance(
        model.sample(1000, np.random.default_rng([1, seed])) * 8 - 4, data[:1000]
    )
    train(model, to_unit, steps=steps, batch_size=batch_size, seed=seed, progress=False)
    after = energy_distance(
        model.sample(1000, np.random.default_rng([1, seed])) * 8 - 4, data[:1000]
    )
    return before, after


class Average:
    """An exponential moving average of modules' parameters and buffers, updated as
    ``train``'s ``on_step``; ``load_into()`` puts it into the modules."""

    def __init__(self, modules, decay):
        self.modules, self.decay = modules, decay
        self.states = [{k: np.copy(v) for k, v in m.state_dict().items()} for m in modules]

    def __call__(self, step, metrics):
        for module, state in zip(self.modules, self.states):
            for k, v in module.state_dict().items():
                if v.dtype.kind == "f":
                    state[k] += (1 - self.decay) * (v - state[k])
                else:  # counters
                    state[k] = np.copy(v)

    def load_into(self):
        for module, state in zip(self.modules, self.states):
            module.load_state_dict(state)


@pytest.mark.outcome
@pytest.mark.parametrize("loss", ["non_saturating", "minimax"])
def test_gan_moves_samples_to_the_data(loss, seed_offset, outcome):
    s = seed_offset
    before, after = learns(toy_gan(s, generator_loss=loss), ring(seed=s), steps=600, seed=s)
    outcome.check("energy distance after / before", after / before, "<", 0.25)


@pytest.mark.outcome
@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_every_fgan_divergence_moves_samples_to_the_data(divergence, seed_offset, outcome):
    """Total variation is the one row whose generator's gradient vanishes where the critic is
    sure: its optimal critic, f'(p/q) = sign(p/q - 1) / 2, is reached only as v -> +-inf, and the
    slope of its activation 0.5 tanh(v) goes to 0 there, while every other row's slope tends to
    1 or more where D rejects the samples (v -> -inf). Trained like the others (Adam, a free
    critic), TV's samples stopped wherever D had become sure of them (ratio 0.25-0.41 on seeds
    3 and 4; at seed 3, 80% of the samples stayed off the ring). TV trains with WGAN's critic
    regime instead (weights clipped to 0.05, RMSprop, 5 critic steps per G step): |v| stays
    small, where 0.5 tanh(v) ~ v / 2 and f*(t) = t make the TV bound half of WGAN's objective,
    whose gradients do not vanish: 0.014-0.029 on seeds 0-7, against the bound 0.3."""
    s = seed_offset
    if divergence == "total_variation":
        model = toy_gan(s, objective=divergence, optimizer="rmsprop", n_critic=5, clip_value=0.05)
        model.opt_g.lr = model.opt_d.lr = 2e-3
        before, after = learns(model, ring(seed=s), steps=300, batch_size=5 * 64, seed=s)
    else:
        before, after = learns(toy_gan(s, objective=divergence), ring(seed=s), steps=600, seed=s)
    outcome.check("energy distance after / before", after / before, "<", 0.3)


@pytest.mark.outcome
def test_wgan_learns_and_keeps_its_critic_clipped(seed_offset, outcome):
    s = seed_offset
    model = toy_gan(s, objective="wasserstein", optimizer="rmsprop", n_critic=5, clip_value=0.05)
    model.opt_g.lr = model.opt_d.lr = 2e-3
    before, after = learns(model, ring(seed=s), steps=300, batch_size=5 * 64, seed=s)
    outcome.check("energy distance after / before", after / before, "<", 0.3)
    for p in model.D.parameters():
        assert np.abs(p.numpy()).max() <= 0.05
    assert any(np.abs(p.numpy()).max() == 0.05 for p in model.D.parameters())  # clipping acted


def test_weight_clipping_counts_as_an_in_place_change():
    """A graph through the critic made before its clipping must refuse to backward, as after an
    optimizer step (the clip changed the weights in place without marking them changed)."""
    model = WGAN(width=4)
    x = tg.tensor(np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32))
    loss = model.D(x).sum()
    model.clip_critic()
    with pytest.raises(RuntimeError, match="was changed after the op used it"):
        loss.backward()


def test_wgan_defaults_are_the_papers():
    model = WGAN(width=4)
    assert (model.objective, model.n_critic, model.clip_value) == ("wasserstein", 5, 0.01)
    assert type(model.opt_d).__name__ == "RMSprop" and model.opt_d.lr == 5e-5
    with pytest.raises(ValueError, match="n_critic=5"):
        model.train_step(np.zeros((12, 1, 28, 28), np.float32), np.random.default_rng(0))


@pytest.mark.outcome
def test_dcgan_learns_digits(mnist_dir, seed_offset, outcome):
    """On 2,000 real MNIST digits (a narrow DCGAN, 300 steps) the samples' energy distance to the
    data falls below 30% of its start. (On synthetic squares with no variation within a batch
    DCGAN's batch-normalised D cannot see the background's level: real digits are the test.)

    The ratio falls slowly for about 100 steps, steeply until about 250, then stays near
    0.04-0.07 (seeds 0 and 2, measured every 25 steps): at 300 steps it is on that plateau,
    4x below the bound. The test this replaces stopped at 150 steps, mid-descent, where the
    ratio was 0.12-0.32 over seeds 0-4 and the two kernels: a draw on when the descent began."""
    s = seed_offset
    data = load_images("mnist", "test", mnist_dir)[0][:2000]
    model = DCGAN(width=8, noise_dim=16, seed=s, lr_g=1e-3, lr_d=1e-3)
    flat = data.reshape(len(data), -1)[:256]
    sample_rng = [1, s]
    before = energy_distance(
        model.sample(256, np.random.default_rng(sample_rng)).reshape(256, -1), flat
    )
    train(model, data, steps=300, batch_size=32, seed=s, progress=False)
    samples = model.sample(256, np.random.default_rng(sample_rng))
    assert samples.shape == (256, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    after = energy_distance(samples.reshape(256, -1), flat)
    outcome.check("energy distance after / before", after / before, "<", 0.3)


def test_dcgan_networks_shapes_and_init():
    model = DCGAN(width=8, noise_dim=10)
    assert model.output_range == (-1.0, 1.0) and model.noise == "normal"
    z = tg.tensor(np.zeros((3, 10), np.float32))
    assert model.G(z).shape == (3, 1, 28, 28)
    assert model.D(tg.tensor(np.zeros((3, 1, 28, 28), np.float32))).shape == (3,)
    conv = next(m for m in model.D.modules() if isinstance(m, tg.nn.Conv2d))
    assert abs(conv.weight.numpy().std() - 0.02) < 0.005  # N(0, 0.02)


def test_losses_are_the_papers_formulas():
    rng = np.random.default_rng(0)
    vr, vf = (tg.tensor(rng.standard_normal(50)) for _ in range(2))
    ones, zeros = np.ones(50), np.zeros(50)
    bce = F.binary_cross_entropy_with_logits
    gan_d = bce(vr, ones) + bce(vf, zeros)
    np.testing.assert_allclose(discriminator_loss("gan", vr, vf).item(), gan_d.item(), rtol=1e-12)
    # minimax: G minimises log(1 - D(G(z))); non-saturating: maximises log D(G(z))
    np.testing.assert_allclose(
        generator_loss("gan", vf, "minimax").item(), -bce(vf, zeros).item(), rtol=1e-12
    )
    np.testing.assert_allclose(
        generator_loss("gan", vf, "non_saturating").item(), bce(vf, ones).item(), rtol=1e-12
    )
    w = vf.numpy().mean() - vr.numpy().mean()
    np.testing.assert_allclose(discriminator_loss("wasserstein", vr, vf).item(), w, rtol=1e-12)
    np.testing.assert_allclose(generator_loss("wasserstein", vf).item(), -vf.numpy().mean())
    with pytest.raises(ValueError, match="generator loss must be one of"):
        generator_loss("gan", vf, "saturating")


def test_gan_validates_its_arguments():
    G, D = mlp([2, 2]), mlp([2, 1])
    for kw, match in [
        ({"objective": "hellinger"}, "objective must be one of"),
        ({"generator_loss": "both"}, "generator_loss must be one of"),
        ({"n_critic": 0}, "n_critic must be a positive int"),
        ({"clip_value": -1.0}, "clip_value must be positive"),
        ({"noise": "cauchy"}, "noise must be"),
        ({"optimizer": "lbfgs"}, "optimizer must be"),
        ({"output_range": (1.0, 0.0)}, "output_range"),
    ]:
        with pytest.raises(ValueError, match=match):
            GAN(G, D, noise_dim=2, **kw)
    with pytest.raises(ValueError, match="divergence 'chi'"):
        FGAN("chi")


def test_gan_checkpoint_round_trip_resumes_identically(tmp_path):
    data = (ring(256) + 4) / 8
    a = toy_gan(seed=3)
    train(a, data, steps=20, batch_size=32, progress=False, checkpoint=tmp_path / "c.npz")
    train(a, data, steps=30, batch_size=32, progress=False, checkpoint=tmp_path / "c.npz",
          resume=True)  # fmt: skip
    b = toy_gan(seed=3)
    train(b, data, steps=30, batch_size=32, progress=False)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=k)


@pytest.mark.outcome
def test_bigan_generates_the_data_and_its_encoder_inverts_the_generator(seed_offset, outcome):
    """1-D data, an affine image of the latent's U(-1, 1): G's samples approach it, and G(E(x))
    lands much nearer x than another data point does (a G(E(x)) that ignored x would be a random
    sample: the ratio below would be about 1).

    Why it holds: the optimum (G affine, E its inverse) is representable, unique up to a
    reflection, and data and latent share a scale; and it scores the average of the last ~100
    iterates (an EMA), because simultaneous gradient steps cycle around a GAN's equilibrium
    rather than settle on it (the average is what approaches it; Yazici et al. 2019). Over
    seeds 0-9 on both BLAS kernels the averaged G, E give energy-distance ratios <= 0.021 and
    inversion ratios <= 0.17 (bounds 0.1 and 0.5); the last iterate itself ranges to 0.13 and
    0.6. The test this replaces, a 2-D Gaussian mapped to std 0.125 against the latent's 0.58
    and scored at the last iterate, saw its inversion ratio wander between 0.4 and 4 during
    training (tails the bounded latent cannot reach, and rearrangements of the square that
    keep G's samples and break E's inverse): of seeds 0 and 1 on the two kernels it passed
    once."""
    s = seed_offset
    rng = np.random.default_rng(s)
    data = (0.3 + 0.8 * rng.uniform(-1, 1, (2000, 1))).astype(np.float32)
    model = BiGAN(
        latent_dim=1, data_shape=(1,), lr=1e-3, seed=s,
        generator=mlp([1, 64, 64, 1], batch_norm=True, rng=rng),
        encoder=mlp([1, 64, 64, 1], activation="leaky_relu", rng=rng),
        discriminator=PairDiscriminator(mlp([2, 64, 64, 1], activation="leaky_relu", rng=rng)),
    )  # fmt: skip

    def samples():
        return model.sample(1000, np.random.default_rng([1, s]))

    before = energy_distance(samples(), data[:1000])
    average = Average([model.G, model.E], decay=0.99)
    train(model, data, steps=1500, batch_size=64, seed=s, on_step=average, progress=False)
    average.load_into()
    outcome.check(
        "energy distance after / before", energy_distance(samples(), data[:1000]) / before, "<", 0.1
    )
    x = data[:500]
    error = np.abs(model.reconstruct(x) - x).mean()
    outcome.check(
        "G(E(x)) error / other point's distance", error / np.abs(x[::-1] - x).mean(), "<", 0.5
    )
    assert model.encode(x).shape == (500, 1)


def test_gaussian_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    kl = gaussian_kl(tg.tensor(mu), tg.tensor(logvar)).numpy()
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((200_000, 3, 4))
    log_q = -0.5 * (((z - mu) ** 2) / np.exp(logvar) + logvar).sum(-1)
    log_p = -0.5 * (z**2).sum(-1)  # the 2 pi terms cancel
    mc = (log_q - log_p).mean(0)
    np.testing.assert_allclose(kl, mc, atol=0.03)
    assert tg.gradcheck(gaussian_kl, [tg.tensor(mu, requires_grad=True),
                                      tg.tensor(logvar, requires_grad=True)])  # fmt: skip


@pytest.mark.outcome
def test_vae_elbo_improves_and_bounds_the_likelihood(seed_offset, outcome):
    """Binary 12-pixel patterns from 3 prototypes with flipped bits: the held-out ELBO rises,
    the importance-sampled bound is above it, and both are below 0 nats."""
    s = seed_offset
    rng = np.random.default_rng(s)
    protos = rng.random((3, 12)) < 0.5
    data = (protos[rng.integers(0, 3, 3000)] ^ (rng.random((3000, 12)) < 0.05)).astype(np.float32)
    model = VAE(latent_dim=2, data_shape=(12,), hidden=32, lr=3e-3, binarize_data=False, seed=s)
    held = data[2500:]
    before = model.elbo(held, np.random.default_rng([1, s]))["elbo"].mean()
    train(model, data[:2500], steps=800, batch_size=50, seed=s, progress=False)
    terms = model.elbo(held, np.random.default_rng([1, s]))
    after = terms["elbo"].mean()
    outcome.check("held-out ELBO gain (nats)", after - before, ">", 2)
    # the data's entropy, 12 H(0.05) + ln 3 = 3.5 nats, is the best -log p can do on average
    outcome.check("held-out ELBO (nats)", after, ">", -3.5 - 2.0)
    ll = model.log_likelihood(held[:200], np.random.default_rng([2, s]), k=50)
    outcome.check("IWAE bound - ELBO (nats)", ll.mean() - terms["elbo"][:200].mean(), ">", 0)
    assert ll.max() < 0
    np.testing.assert_allclose(-terms["elbo"], terms["reconstruction"] + terms["kl"], rtol=1e-5)


def test_vae_binarizes_grey_images_with_their_intensities():
    x = np.full((2000, 1, 2, 2), 0.3, np.float32)
    b = binarize(x, np.random.default_rng(0))
    assert set(np.unique(b)) == {0.0, 1.0} and b.dtype == np.float32
    assert abs(b.mean() - 0.3) < 0.01


@pytest.mark.parametrize("name", ["dcgan", "wgan", "fgan", "bigan", "vae"])
def test_example_scripts_end_to_end(name, tmp_path, mnist_dir, example):
    """Each example trains (a few steps), resumes, evaluates and writes its files."""
    script = example(f"{name}_mnist")
    out = tmp_path / "run"
    argv = ["--split", "test", "--data-dir", mnist_dir, "--steps", "2", "--batch-size", "8",
            "--out", str(out), "--no-progress", "--eval-samples", "200",
            "--classifier", str(tmp_path / "clf.npz"), "--classifier-steps", "2"]  # fmt: skip
    assert script.main(argv) == 0
    assert script.main([*argv, "--steps", "3", "--resume"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(json.loads((out / "history.json").read_text())) == 3
    assert np.isfinite(m["parzen"]["mean"]) and sum(m["sample_class_counts"]) == 200
    assert m["flags"]["steps"] == 3 and m["splits"].startswith("train / validation / test")
    expected = {"bigan": ["reconstructions.png"], "vae": ["reconstructions.png", "elbo.png"],
                "wgan": ["wasserstein.png"], "fgan": ["divergence.png"]}.get(name, [])  # fmt: skip
    for f in ["samples.png", "losses.png" if name != "vae" else "terms.png", *expected]:
        assert (out / f).stat().st_size > 0, f
    if name == "bigan":
        assert 0 <= m["linear_probe_accuracy"] <= 1 and m["reconstruction_mse"] > 0
    if name == "vae":
        assert m["test_elbo"]["mean"] < 0 and m["test_log_likelihood_k100"]["mean"] < 0


@pytest.mark.outcome
def test_trained_discriminator_approaches_the_optimal_one_and_the_jensen_shannon_bound(
    seed_offset, outcome
):
    """GAN theory (Goodfellow et al., Prop. 1 and Thm. 1): for fixed P = N(0, 1), Q = N(1.5, 1)
    the best discriminator is D*(x) = p(x) / (p(x) + q(x)), and at D* the discriminator's
    objective -d_loss equals 2 JS(P || Q) - log 4 (the "gan" row of f-GAN's table)."""
    rng = np.random.default_rng(seed_offset)
    D = mlp([1, 32, 32, 1], activation="tanh", rng=rng)
    opt = tg.optim.Adam(D.parameters(), lr=3e-3)
    for _ in range(1500):
        real = tg.tensor(rng.standard_normal((256, 1), np.float32))
        fake = tg.tensor(rng.standard_normal((256, 1), np.float32) + 1.5)
        loss = discriminator_loss("gan", D(real).reshape(-1), D(fake).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = np.linspace(-2, 3.5, 23, dtype=np.float32)[:, None]
    p, q = np.exp(-0.5 * x**2), np.exp(-0.5 * (x - 1.5) ** 2)
    with tg.no_grad():
        d = tg.sigmoid(D(tg.tensor(x))).numpy()
    # over seeds 0-19: 0.007-0.037, mean 0.018, sd 0.008 (the bound is 4 sd above the mean)
    outcome.check("max |D - D*|", np.abs(d - p / (p + q)).max(), "<=", 0.05)
    # JS(P || Q) by quadrature, and the objective at the trained D on fresh samples
    grid = np.linspace(-10, 12, 20001)
    pg, qg = (np.exp(-0.5 * (grid - m) ** 2) / np.sqrt(2 * np.pi) for m in (0, 1.5))
    mid = (pg + qg) / 2
    js = 0.5 * np.trapezoid(pg * np.log(pg / mid) + qg * np.log(qg / mid), grid)
    real = rng.standard_normal((20000, 1), np.float32)
    fake = rng.standard_normal((20000, 1), np.float32) + 1.5
    with tg.no_grad():
        bound = -discriminator_loss(
            "gan", D(tg.tensor(real)).reshape(-1), D(tg.tensor(fake)).reshape(-1)
        ).item()
    gap = 2 * js - np.log(4) - bound
    outcome.check("2 JS - log 4 - objective", gap, ">=", -0.02)  # a lower bound (up to noise)
    outcome.check("|2 JS - log 4 - objective|", abs(gap), "<=", 0.03)  # nearly tight at D ~ D*


def test_vae_report_scores_both_bounds_on_the_same_binary_images(tmp_path, monkeypatch, example):
    from tinygan import evaluation

    grey = np.random.default_rng(0).random((30, 1, 28, 28), dtype=np.float32)
    splits = evaluation.Splits((grey, np.zeros(30, int)), (grey, np.zeros(30, int)),
                                (grey, np.arange(30) % 10), "test")  # fmt: skip
    model, seen = VAE(latent_dim=3, seed=0), {}

    def recording(name):
        method = getattr(model, name)

        def call(x, *args, **kwargs):
            seen[name] = x.copy()
            return method(x, *args, **kwargs)

        return call

    for name in ("elbo", "log_likelihood"):
        monkeypatch.setattr(model, name, recording(name))
    monkeypatch.setattr(evaluation, "probe", lambda *a, **k: 0.5)
    example("vae_mnist").vae_report(model, splits, tmp_path)
    assert set(np.unique(seen["elbo"])) == {0.0, 1.0}
    np.testing.assert_array_equal(seen["elbo"], seen["log_likelihood"])


def test_scoring_classifier_default_path_names_split_and_steps():
    import argparse

    from tinygan.cli import classifier_path

    def path(**kw):
        return classifier_path(argparse.Namespace(**{"dataset": "mnist", "split": "test",
                                                     "classifier": None, "classifier_steps": 3000,
                                                     **kw}))  # fmt: skip

    assert (
        len({path(), path(split="train"), path(classifier_steps=10), path(dataset="fashion")}) == 4
    )
    assert path(classifier="mine.npz") == "mine.npz"


def test_frozen_restores_each_parameters_own_requires_grad():
    from tinygan.models.base import frozen

    net = mlp([2, 3, 1], rng=np.random.default_rng(0))
    first, *rest = net.parameters()
    first.requires_grad = False  # frozen on purpose by the user
    with frozen(net):
        with frozen(net[0]):  # nested
            assert not any(p.requires_grad for p in net.parameters())
        assert not any(p.requires_grad for p in net.parameters())
    assert not first.requires_grad and all(p.requires_grad for p in rest)
