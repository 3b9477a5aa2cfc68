"""recon.losses against loop-by-loop numpy references of the SPEC 5 definitions."""

import numpy as np
import pytest
import torch

from recon import constants as C
from recon import losses as L
from recon.types import Coeffs


def _rng(seed=0):
    return np.random.default_rng(seed)


def _coeffs(idc, exp, tex, gamma=None):
    """Coeffs (B, ...) with the given id / exp / tex (and gamma), the other groups zero."""
    batch, dtype = idc.shape[0], idc.dtype
    gamma = torch.zeros(batch, 27, dtype=dtype) if gamma is None else gamma
    return Coeffs(id=idc, exp=exp, tex=tex, angle=torch.zeros(batch, 3, dtype=dtype), gamma=gamma,
                  trans=torch.zeros(batch, 3, dtype=dtype))


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
    coeffs = _coeffs(idc, exp, tex)
    assert float(L.coefficient_prior(coeffs)) == pytest.approx(float(ref))

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


# ---------------------------------------------------------------------------- the term builder

def _term_inputs(seed=8, batch=3, with_extras=True):
    """A tiny batch of every input of ``loss_terms`` (float64, all requiring gradients where
    a fit or a network would move them), and the numpy arrays behind it."""
    rng = _rng(seed)
    arrays = {
        "rendered": rng.random((batch, 3, 5, 4)), "images": rng.random((batch, 3, 5, 4)),
        "attention": rng.random((batch, 1, 5, 4)), "landmarks": rng.normal(size=(batch, 68, 2)) * 3,
        "target_landmarks": rng.normal(size=(batch, 68, 2)) * 3, "id": rng.normal(size=(batch, 4)),
        "exp": rng.normal(size=(batch, 3)), "tex": rng.normal(size=(batch, 5)),
        "gamma": rng.normal(size=(batch, 27)), "albedo": rng.random((batch, 6, 3)),
        "features": rng.normal(size=(batch, 7)), "target_features": rng.normal(size=(batch, 7)),
        "contrast": rng.normal(size=(batch, 3, 5, 4)) * 0.2, "target_contrast": rng.normal(size=(batch, 3, 5, 4)) * 0.2,
    }
    t = {k: torch.tensor(v, requires_grad=k not in ("images", "attention", "target_landmarks",
                                                     "target_features", "target_contrast"))
         for k, v in arrays.items()}
    skin = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    inputs = L.TermInputs(rendered=t["rendered"], images=t["images"], attention=t["attention"],
                          landmarks=t["landmarks"], target_landmarks=t["target_landmarks"],
                          coeffs=_coeffs(t["id"], t["exp"], t["tex"], t["gamma"]), albedo=t["albedo"],
                          skin_mask=skin,
                          features=(t["features"], t["target_features"]) if with_extras else None,
                          contrast=(t["contrast"], t["target_contrast"], t["attention"]) if with_extras else None)
    return inputs, arrays, skin.numpy(), t


def _reference_terms(a, skin, weights, shared=()):
    """Per-image SPEC 5 terms by loops over the arrays, and the batch-pooled colour and
    contrast terms (pixel sums over all images, as the original pools the photometric one)."""
    batch = a["rendered"].shape[0]
    heavy = np.ones(68)
    heavy[list(C.LANDMARK_HEAVY_IDS)] = C.LANDMARK_HEAVY_WEIGHT
    inner = {"id": weights.reg_id, "exp": weights.reg_exp, "tex": weights.reg_tex}
    terms = {name: [] for name in ("color", "lm", "reg", "gamma", "reflc", "contrast", "feat")}
    pooled = np.zeros(3)  # weighted colour residuals, weighted contrast penalties, weights
    for b in range(batch):
        e = np.sqrt(C.PHOTO_EPS + ((a["rendered"][b] - a["images"][b]) ** 2).sum(0))
        w = a["attention"][b, 0]
        terms["color"].append((e * w).sum() / max(w.sum(), 1.0))
        terms["lm"].append(sum(heavy[i] * ((a["landmarks"][b, i] - a["target_landmarks"][b, i]) ** 2).sum()
                               for i in range(68)) / 68)
        terms["reg"].append(sum(inner[g] / (batch if g in shared else 1) * (a[g][b] ** 2).sum() for g in inner))
        light = a["gamma"][b].reshape(3, 9)
        terms["gamma"].append(((light - light.mean(0)) ** 2).mean())
        albedo = a["albedo"][b, skin]
        terms["reflc"].append(((albedo - albedo.mean(0)) ** 2).sum() / skin.sum())
        c = np.sqrt(C.PHOTO_EPS + ((a["contrast"][b] - a["target_contrast"][b]) ** 2).sum(0))
        terms["contrast"].append((0.1 * np.log1p(c / 0.1) * w).sum() / max(w.sum(), 1.0))
        pooled += [(e * w).sum(), (0.1 * np.log1p(c / 0.1) * w).sum(), w.sum()]
        f, g = a["features"][b], a["target_features"][b]
        terms["feat"].append(1 - f @ g / (np.linalg.norm(f) * np.linalg.norm(g)))
    pooled_terms = {"color": pooled[0] / max(pooled[2], 1.0), "contrast": pooled[1] / max(pooled[2], 1.0)}
    return {k: np.array(v) for k, v in terms.items()}, pooled_terms


def test_loss_terms_per_image_and_batch_reductions_match_a_loop_reference():
    weights = L.LossWeights(contrast=2.0)
    inputs, arrays, skin, _ = _term_inputs()
    reference, pooled = _reference_terms(arrays, skin, weights)
    per_image = L.loss_terms(inputs, weights, reduction="none")
    assert list(per_image) == ["color", "lm", "reg", "gamma", "reflc", "contrast", "feat"]
    for name, values in per_image.items():
        np.testing.assert_allclose(values.detach().numpy(), reference[name], rtol=1e-12, err_msg=name)
    batch = L.loss_terms(inputs, weights, reduction="batch")
    for name, value in batch.items():
        # The original pools the photometric term over all pixels of the batch (and the
        # contrast term does as it); every other term is the mean of the per-image values.
        expected = pooled[name] if name in pooled else reference[name].mean()
        assert value.shape == () and float(value.detach()) == pytest.approx(expected, rel=1e-12), name
    total = L.total_loss(per_image, weights)
    np.testing.assert_allclose(total.detach().numpy(),
                               sum(getattr(weights, name) * reference[name] for name in reference), rtol=1e-12)


def test_loss_terms_count_a_shared_groups_prior_once_for_the_batch():
    weights = L.LossWeights()
    inputs, arrays, skin, t = _term_inputs(with_extras=False)
    # one identity and albedo for the set, as a subject fit has them: a (1, K) row expanded
    for group in ("id", "tex"):
        arrays[group] = np.repeat(arrays[group][:1], 3, axis=0)
    coeffs = _coeffs(torch.tensor(arrays["id"]), torch.tensor(arrays["exp"]), torch.tensor(arrays["tex"]), t["gamma"])
    inputs = L.TermInputs(**{**vars(inputs), "coeffs": coeffs})
    shared = L.loss_terms(inputs, weights, reduction="none", shared_groups=("id", "tex"))["reg"]
    reference, _ = _reference_terms({**arrays, "contrast": arrays["rendered"], "target_contrast": arrays["images"]},
                                    skin, weights, shared=("id", "tex"))
    np.testing.assert_allclose(shared.numpy(), reference["reg"], rtol=1e-12)
    # summed over the set: the identity's and albedo's prior once, every expression's once
    once = (weights.reg_id * (arrays["id"][0] ** 2).sum() + weights.reg_tex * (arrays["tex"][0] ** 2).sum()
            + weights.reg_exp * (arrays["exp"] ** 2).sum())
    assert float(shared.sum()) == pytest.approx(once, rel=1e-12)
    with pytest.raises(ValueError, match="shared groups"):
        L.coefficient_prior(coeffs, weights, shared_groups=("gamma",))


def test_loss_terms_robust_options_are_the_robust_losses():
    inputs, _, _, _ = _term_inputs(with_extras=False)
    terms = L.loss_terms(inputs, reduction="none", photo_robust_scale=0.1, landmark_robust_scale=3.0)
    torch.testing.assert_close(terms["color"], L.robust_photometric_loss(
        inputs.rendered, inputs.images, inputs.attention, scale=0.1, reduction="none"), rtol=0, atol=0)
    torch.testing.assert_close(terms["lm"], L.landmark_loss(
        inputs.landmarks, inputs.target_landmarks, reduction="none", robust_scale=3.0), rtol=0, atol=0)


def test_a_zero_weight_drops_its_term_and_its_inputs_cannot_poison_the_total():
    inputs, _, _, t = _term_inputs()
    weights = L.LossWeights(contrast=2.0)
    full = L.loss_terms(inputs, weights, reduction="none")
    nan_features = torch.full_like(t["features"], float("nan"))
    poisoned = L.TermInputs(**{**vars(inputs), "features": (nan_features, t["target_features"])})
    for name in ("color", "lm", "reg", "gamma", "reflc", "contrast", "feat"):
        without = L.LossWeights(**{**vars(weights), name: 0.0})
        terms = L.loss_terms(poisoned if name == "feat" else inputs, without, reduction="none")
        assert list(terms) == [k for k in full if k != name]
        expected = sum(getattr(weights, k) * v for k, v in full.items() if k != name)
        torch.testing.assert_close(L.total_loss(terms, without), expected, rtol=1e-15, atol=0)
    assert not L.loss_terms(poisoned, weights, reduction="none")["feat"].isfinite().any()


def test_loss_terms_gradients_are_finite_and_match_finite_differences():
    inputs, _, _, t = _term_inputs(batch=2)
    # a pixel with zero colour residual: the eps inside the root keeps its gradient finite
    with torch.no_grad():
        t["rendered"][0, :, 0, 0] = t["images"][0, :, 0, 0]
    weights = L.LossWeights(contrast=2.0)
    for reduction in ("batch", "none"):
        L.total_loss(L.loss_terms(inputs, weights, reduction=reduction), weights).sum().backward()
    moved = [name for name, tensor in t.items() if tensor.requires_grad]
    for name in moved:
        assert t[name].grad is not None and torch.isfinite(t[name].grad).all(), name

    def total(landmarks, gamma, albedo):
        coeffs = Coeffs(**{**vars(inputs.coeffs), "gamma": gamma})
        changed = L.TermInputs(**{**vars(inputs), "landmarks": landmarks, "coeffs": coeffs, "albedo": albedo})
        return L.total_loss(L.loss_terms(changed, weights, reduction="none", shared_groups=("id",)), weights)

    assert torch.autograd.gradcheck(total, (t["landmarks"], t["gamma"], t["albedo"]))
