"""The GAN family, BiGAN and the VAE: each learns on small synthetic data (a measured distance to
the data drops well below its start), plus the losses' exact forms and the models' contracts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tinygan as tg
from tinygan.experiments import load_images
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


def learns(model, data, steps, batch_size=64, seed=0):
    """Energy distance of 1,000 samples to the data before and after training."""
    to_unit = (data + 4) / 8  # the models take data in [0, 1]
    before = energy_distance(model.sample(1000, np.random.default_rng(1)) * 8 - 4, data[:1000])
    train(model, to_unit, steps=steps, batch_size=batch_size, seed=seed, progress=False)
    after = energy_distance(model.sample(1000, np.random.default_rng(1)) * 8 - 4, data[:1000])
    return before, after


@pytest.mark.parametrize("loss", ["non_saturating", "minimax"])
def test_gan_moves_samples_to_the_data(loss):
    before, after = learns(toy_gan(generator_loss=loss), ring(), steps=600)
    assert after < 0.25 * before, (before, after)


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_every_fgan_divergence_moves_samples_to_the_data(divergence):
    before, after = learns(toy_gan(objective=divergence), ring(), steps=600)
    assert after < 0.3 * before, (before, after)


def test_wgan_learns_and_keeps_its_critic_clipped():
    model = toy_gan(objective="wasserstein", optimizer="rmsprop", n_critic=5, clip_value=0.05)
    model.opt_g.lr = model.opt_d.lr = 2e-3
    before, after = learns(model, ring(), steps=300, batch_size=5 * 64)
    assert after < 0.3 * before, (before, after)
    for p in model.D.parameters():
        assert np.abs(p.numpy()).max() <= 0.05
    assert any(np.abs(p.numpy()).max() == 0.05 for p in model.D.parameters())  # clipping acted


def test_wgan_defaults_are_the_papers():
    model = WGAN(width=4)
    assert (model.objective, model.n_critic, model.clip_value) == ("wasserstein", 5, 0.01)
    assert type(model.opt_d).__name__ == "RMSprop" and model.opt_d.lr == 5e-5
    with pytest.raises(ValueError, match="n_critic=5"):
        model.train_step(np.zeros((12, 1, 28, 28), np.float32), np.random.default_rng(0))


def test_dcgan_learns_digits(mnist_dir):
    """On 2,000 real MNIST digits (a narrow DCGAN, 150 steps) the samples' energy distance to the
    data falls below 30% of its start. (On synthetic squares with no variation within a batch
    DCGAN's batch-normalised D cannot see the background's level: real digits are the test.)"""
    data = load_images("mnist", "test", mnist_dir)[0][:2000]
    model = DCGAN(width=8, noise_dim=16, seed=0, lr_g=1e-3, lr_d=1e-3)
    flat = data.reshape(len(data), -1)[:256]
    before = energy_distance(model.sample(256, np.random.default_rng(1)).reshape(256, -1), flat)
    train(model, data, steps=150, batch_size=32, progress=False)
    samples = model.sample(256, np.random.default_rng(1))
    assert samples.shape == (256, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    after = energy_distance(samples.reshape(256, -1), flat)
    assert after < 0.3 * before, (before, after)


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


def test_bigan_generates_the_data_and_its_encoder_inverts_the_generator():
    """A correlated 2-D Gaussian: G's samples approach it, and G(E(x)) lands nearer x than a
    random other data point does (BiGAN's inversion is approximate: E only inverts G at the
    optimum)."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((2000, 2)) @ [[1, 0.8], [0, 0.6]] + [1.5, -1]).astype(np.float32)
    model = BiGAN(
        latent_dim=2, data_shape=(2,), lr=1e-3, seed=0,
        generator=mlp([2, 64, 64, 2], batch_norm=True, rng=rng),
        encoder=mlp([2, 64, 64, 2], activation="leaky_relu", rng=rng),
        discriminator=PairDiscriminator(mlp([4, 64, 64, 1], activation="leaky_relu", rng=rng)),
    )  # fmt: skip
    before, after = learns(model, data, steps=2000)
    assert after < 0.1 * before, (before, after)
    unit = (data[:500] + 4) / 8
    error = np.linalg.norm(model.reconstruct(unit) - unit, axis=1).mean()
    assert error < 0.75 * np.linalg.norm(unit[::-1] - unit, axis=1).mean()
    assert model.encode(unit).shape == (500, 2)


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


def test_vae_elbo_improves_and_bounds_the_likelihood():
    """Binary 12-pixel patterns from 3 prototypes with flipped bits: the held-out ELBO rises,
    the importance-sampled bound is above it, and both are below 0 nats."""
    rng = np.random.default_rng(0)
    protos = rng.random((3, 12)) < 0.5
    data = (protos[rng.integers(0, 3, 3000)] ^ (rng.random((3000, 12)) < 0.05)).astype(np.float32)
    model = VAE(latent_dim=2, data_shape=(12,), hidden=32, lr=3e-3, binarize_data=False)
    held = data[2500:]
    before = model.elbo(held, np.random.default_rng(1))["elbo"].mean()
    train(model, data[:2500], steps=800, batch_size=50, progress=False)
    terms = model.elbo(held, np.random.default_rng(1))
    after = terms["elbo"].mean()
    assert after > before + 2, (before, after)
    # the data's entropy, 12 H(0.05) + ln 3 = 3.5 nats, is the best -log p can do on average
    assert after > -3.5 - 2.0, after
    ll = model.log_likelihood(held[:200], np.random.default_rng(2), k=50)
    assert ll.mean() > terms["elbo"][:200].mean() and ll.max() < 0
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


def test_trained_discriminator_approaches_the_optimal_one_and_the_jensen_shannon_bound():
    """GAN theory (Goodfellow et al., Prop. 1 and Thm. 1): for fixed P = N(0, 1), Q = N(1.5, 1)
    the best discriminator is D*(x) = p(x) / (p(x) + q(x)), and at D* the discriminator's
    objective -d_loss equals 2 JS(P || Q) - log 4 (the "gan" row of f-GAN's table)."""
    rng = np.random.default_rng(0)
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
    np.testing.assert_allclose(d, p / (p + q), atol=0.05)
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
    assert bound <= 2 * js - np.log(4) + 0.02  # a lower bound (up to sampling noise)
    assert bound == pytest.approx(2 * js - np.log(4), abs=0.03)  # and nearly tight at D ~ D*


def test_vae_report_scores_both_bounds_on_the_same_binary_images(tmp_path, monkeypatch):
    from tinygan import experiments

    grey = np.random.default_rng(0).random((30, 1, 28, 28), dtype=np.float32)
    splits = experiments.Splits((grey, np.zeros(30, int)), (grey, np.zeros(30, int)),
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
    monkeypatch.setattr(experiments, "probe", lambda *a, **k: 0.5)
    experiments.vae_report(model, splits, tmp_path)
    assert set(np.unique(seen["elbo"])) == {0.0, 1.0}
    np.testing.assert_array_equal(seen["elbo"], seen["log_likelihood"])


def test_scoring_classifier_default_path_names_split_and_steps():
    from tinygan.experiments import argparse, classifier_path

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
