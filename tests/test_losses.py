"""recon.losses against loop-by-loop numpy references of the SPEC 5 definitions."""

import numpy as np
import pytest
import torch

from recon import constants as C
from recon import losses as L


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_photometric_matches_brute_force_and_pools_batch():
    rng = _rng()
    pred, target = rng.random((2, 3, 5, 4)), rng.random((2, 3, 5, 4))
    skin, mask = rng.random((2, 1, 5, 4)), (rng.random((2, 1, 5, 4)) > 0.4).astype(float)
    num = den = 0.0
    per_image = []
    for b in range(2):
        nb = db = 0.0
        for i in range(5):
            for j in range(4):
                e = np.sqrt(1e-6 + sum((pred[b, c, i, j] - target[b, c, i, j]) ** 2 for c in range(3)))
                a = skin[b, 0, i, j] * mask[b, 0, i, j]
                nb, db = nb + e * a, db + a
        per_image.append(nb / max(db, 1.0))
        num, den = num + nb, den + db
    t = [torch.tensor(x) for x in (pred, target, skin, mask)]
    attention = L.photo_attention(t[3], t[2])
    assert float(L.photometric_loss(t[0], t[1], attention)) == pytest.approx(num / max(den, 1.0))
    got = L.photometric_loss(t[0], t[1], attention, reduction="none").numpy()
    np.testing.assert_allclose(got, per_image, rtol=1e-12)


def test_photometric_normaliser_is_at_least_one_and_eps_inside_root():
    pred = torch.zeros(1, 3, 2, 2)
    attention = torch.full((1, 1, 2, 2), 0.1)  # sum 0.4 < 1 -> divide by 1
    loss = L.photometric_loss(pred, pred, attention)
    assert float(loss) == pytest.approx(0.4 * np.sqrt(1e-6), rel=1e-6)
    pred.requires_grad_(True)
    L.photometric_loss(pred, pred.detach(), attention).backward()
    assert torch.isfinite(pred.grad).all()  # eps keeps the root differentiable at zero


def test_attention_detaches_mask():
    mask = torch.rand(1, 1, 3, 3, requires_grad=True)
    assert not L.photo_attention(mask, torch.rand(1, 1, 3, 3)).requires_grad


def test_robust_penalty_small_residuals_like_l2_and_bounded_gradient():
    e = torch.tensor([1e-4, 0.5, 5.0], requires_grad=True)
    rho = L.robust_penalty(e, 0.1)
    assert float(rho[0].detach()) == pytest.approx(1e-4, rel=1e-3)
    rho.sum().backward()
    np.testing.assert_allclose(e.grad.numpy(), 1 / (1 + e.detach().numpy() / 0.1), rtol=1e-6)
    # an outlier contributes far less than under the plain norm
    assert float(rho[2].detach()) < 0.1 * 5.0


def test_robust_photometric_reduces_occluder_influence():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8)
    pred = target + 0.01
    occluded = target.clone()
    occluded[..., :4, :] = 1.0 - occluded[..., :4, :]  # half the face differs strongly
    att = torch.ones(1, 1, 8, 8)
    ratio_plain = L.photometric_loss(pred, occluded, att) / L.photometric_loss(pred, target, att)
    ratio_robust = (L.robust_photometric_loss(pred, occluded, att, 0.05)
                    / L.robust_photometric_loss(pred, target, att, 0.05))
    assert ratio_robust < 0.5 * ratio_plain


def test_landmark_loss_weights_and_normaliser():
    rng = _rng(1)
    p, q = rng.normal(size=(3, 68, 2)) * 5, rng.normal(size=(3, 68, 2)) * 5
    w = np.ones(68)
    w[[28, 29, 30, 60, 61, 62, 63, 64, 65, 66, 67]] = 20
    ref = sum(w[i] * ((p[b, i] - q[b, i]) ** 2).sum() for b in range(3) for i in range(68)) / (3 * 68)
    got = L.landmark_loss(torch.tensor(p), torch.tensor(q))
    assert float(got) == pytest.approx(ref, rel=1e-12)
    per = L.landmark_loss(torch.tensor(p), torch.tensor(q), reduction="none")
    assert float(per.mean()) == pytest.approx(ref, rel=1e-12)
    vis = torch.ones(3, 68, dtype=torch.float64)
    vis[:, 0] = 0
    ref_vis = ref - sum(((p[b, 0] - q[b, 0]) ** 2).sum() for b in range(3)) / (3 * 68)
    assert float(L.landmark_loss(torch.tensor(p), torch.tensor(q), visibility=vis)) == pytest.approx(ref_vis)


def test_robust_landmark_loss_is_the_cauchy_penalty():
    rng = _rng(7)
    p, q = rng.normal(size=(2, 68, 2)) * 4, rng.normal(size=(2, 68, 2)) * 4
    w = L.landmark_weights(68, None, torch.float64).numpy()
    scale = 3.0
    squared = ((p - q) ** 2).sum(-1)
    ref = (w * scale ** 2 * np.log1p(squared / scale ** 2)).sum(-1) / 68
    got = L.landmark_loss(torch.tensor(p), torch.tensor(q), reduction="none", robust_scale=scale)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    # Small residuals cost what the squared distance costs; one point 100 px off costs
    # about 2 log(100 / s) s^2 instead of 10^4.
    near = L.landmark_loss(torch.tensor(p) * 1e-3, torch.tensor(q) * 1e-3, robust_scale=scale)
    assert float(near) == pytest.approx(float(L.landmark_loss(torch.tensor(p) * 1e-3, torch.tensor(q) * 1e-3)),
                                        rel=1e-5)
    far = torch.zeros(1, 68, 2, dtype=torch.float64)
    far[0, 0, 0] = 100.0
    cost = float(L.landmark_loss(far, torch.zeros_like(far), robust_scale=scale)) * 68
    assert cost == pytest.approx(scale ** 2 * np.log1p(100.0 ** 2 / scale ** 2))


def test_regularizer_gamma_reflectance_identity():
    rng = _rng(2)
    idc, exp, tex = (torch.tensor(rng.normal(size=(2, k))) for k in (80, 64, 80))
    ref = np.mean([1.0 * (idc[b] ** 2).sum() + 0.8 * (exp[b] ** 2).sum() + 0.017 * (tex[b] ** 2).sum()
                   for b in range(2)])
    assert float(L.coefficient_regularizer(idc, exp, tex)) == pytest.approx(float(ref))

    gamma = rng.normal(size=(2, 27))
    g = gamma.reshape(2, 3, 9)
    ref_g = np.mean([(g[b, c, k] - g[b, :, k].mean()) ** 2 for b in range(2) for c in range(3) for k in range(9)])
    assert float(L.gamma_loss(torch.tensor(gamma))) == pytest.approx(ref_g)
    white = torch.tensor(np.repeat(rng.normal(size=(2, 1, 9)), 3, axis=1).reshape(2, 27))
    assert float(L.gamma_loss(white)) == pytest.approx(0.0, abs=1e-15)

    albedo = rng.random((2, 6, 3))
    mask = np.array([1, 0, 1, 1, 0, 1], bool)
    total = 0.0
    for b in range(2):
        mu = albedo[b, mask].mean(0)
        total += ((albedo[b, mask] - mu) ** 2).sum()
    ref_r = total / (2 * mask.sum())
    assert float(L.reflectance_loss(torch.tensor(albedo), torch.tensor(mask))) == pytest.approx(ref_r)

    f = torch.tensor(rng.normal(size=(2, 5)))
    assert float(L.identity_loss(f, 3 * f)) == pytest.approx(0.0, abs=1e-12)
    assert float(L.identity_loss(f, -f)) == pytest.approx(2.0)


def test_total_loss_uses_original_weights():
    terms = {name: torch.tensor(1.0) for name in ("color", "lm", "feat", "reg", "gamma", "reflc")}
    expected = C.W_COLOR + C.W_LANDMARK + C.W_FEAT + C.W_REG + C.W_GAMMA + C.W_REFLECTANCE
    assert float(L.total_loss(terms)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown"):
        L.total_loss({"colour": torch.tensor(1.0)})


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        L.photometric_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError):
        L.landmark_loss(torch.zeros(1, 68, 2), torch.zeros(1, 67, 2))
    with pytest.raises(ValueError):
        L.gamma_loss(torch.zeros(1, 27), reduction="sum")


def test_silhouette_band_is_the_ring_on_both_sides_of_the_outline():
    coverage = torch.zeros(1, 1, 9, 9)
    coverage[..., 3:6, 3:6] = 1.0
    band = L.silhouette_band(coverage)
    expected = torch.zeros(9, 9)
    expected[2:7, 2:7] = 1.0
    expected[4, 4] = 0.0                  # the one pixel whose whole neighbourhood is face
    assert torch.equal(band[0, 0], expected)


def test_gaussian_blur_matches_scipy_with_replicated_edges():
    from scipy.ndimage import gaussian_filter
    image = np.random.default_rng(3).random((2, 3, 20, 17))
    for sigma in (1.5, 2.0):
        ours = L.gaussian_blur(torch.tensor(image), sigma).numpy()
        reference = gaussian_filter(image, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=3.0)
        np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_log_contrast_ignores_a_gain_and_a_smooth_field_but_not_shading():
    rng = np.random.default_rng(4)
    image = torch.tensor(rng.uniform(0.2, 0.8, (1, 3, 40, 40)))
    contrast = L.log_contrast(image, 3.0, floor=0.0)
    # a global gain (the exact albedo-light trade) is a constant in the log
    torch.testing.assert_close(L.log_contrast(2.5 * image, 3.0, floor=0.0), contrast, rtol=0, atol=1e-12)
    # exp(linear) is linear in the log, and a Gaussian blur keeps a linear function (away
    # from the replicated edges)
    yy, xx = torch.meshgrid(torch.arange(40.0, dtype=torch.float64), torch.arange(40.0, dtype=torch.float64),
                            indexing="ij")
    field = torch.exp(0.02 * xx - 0.01 * yy)
    inner = (..., slice(10, 30), slice(10, 30))
    torch.testing.assert_close(L.log_contrast(image * field, 3.0, floor=0.0)[inner], contrast[inner],
                               rtol=0, atol=1e-12)
    # a local change of brightness (shading of a bump) is not taken away
    bump = 1 + 0.3 * torch.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 8.0)
    assert float((L.log_contrast(image * bump, 3.0, floor=0.0) - contrast)[inner].abs().max()) > 0.1


def test_contrast_loss_is_zero_on_equal_images_and_its_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    target = torch.tensor(rng.uniform(0.1, 0.9, (1, 3, 8, 8)))
    attention = torch.tensor(rng.uniform(0, 1, (1, 1, 8, 8)))
    target_contrast = L.log_contrast(target, 1.0)
    floor_value = 0.1 * np.log1p(np.sqrt(C.PHOTO_EPS) / 0.1)   # rho of the eps inside the root
    assert float(L.contrast_loss(target_contrast, target_contrast, attention)) == pytest.approx(floor_value)
    pred = torch.tensor(rng.uniform(0.1, 0.9, (1, 3, 8, 8)), requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p: L.contrast_loss(L.log_contrast(p, 1.0), target_contrast, attention, reduction="none"), (pred,))
