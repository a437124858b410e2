"""check_vjp on gradient code as it is written in the wild (issue 18): complex numbers, a
custom_vjp's nondiff_argnums passed positionally, equinox modules with non-array leaves, stateful
layers and float32 models under finite differences, x64 off, second-order bugs, model paths."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxback as jb
from jaxback.testing import EdgeCase, LayerInfo, check_vjp, run_checks


def _normal(seed, shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _complex(seed, shape, dtype=jnp.complex128):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), dtype)


def _custom_vjp(fun, fwd, bwd, **kw):
    f = jax.custom_vjp(fun, **kw)
    f.defvjp(fwd, bwd)
    return f


# 1. complex numbers ----------------------------------------------------------------------------------
@jax.custom_vjp
def cexp(x):
    return jnp.exp(1j * x)


cexp.defvjp(lambda x: (cexp(x), x), lambda x, g: (jnp.real(g * 1j * jnp.exp(1j * x)),))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["float64", "float32"])
def test_a_real_input_with_a_complex_output_as_in_the_issue(dtype):
    check_vjp(cexp, jnp.array([0.3, -1.2], dtype), reference=lambda x: jnp.exp(1j * x))


def test_a_complex_cotangent_for_a_real_input_is_flagged():
    """JAX accepts it silently (jax.grad even returns a complex gradient for a real x)."""
    leaky = _custom_vjp(lambda x: jnp.exp(1j * x), lambda x: (jnp.exp(1j * x), x),
                        lambda x, g: (g * 1j * jnp.exp(1j * x),))
    with pytest.raises(AssertionError, match=r"args\[0\]: cotangent is complex \(complex128\) but the primal is real"
                                             r" \(float64\[2\]\): a real input takes a real cotangent"):
        check_vjp(leaky, jnp.array([0.3, -1.2]), reference=lambda x: jnp.exp(1j * x))


# the FFT: C-linear, y = F x, and JAX's cotangent convention is the transpose F^T = F (no conjugate)
def _fft(x):
    return jnp.fft.fft(x)   # custom_vjp would make fft's keyword defaults (axis=-1) positional, traced


def _fft_rule(bwd):
    return _custom_vjp(_fft, lambda x: (_fft(x), None), lambda _, g: (bwd(g),))


def test_complex_in_complex_out_follows_jax_convention():
    x = _complex(0, (8,))
    check_vjp(_fft_rule(_fft), x, reference=_fft)
    adjoint = _fft_rule(lambda g: jnp.fft.ifft(g) * g.shape[-1])   # F^H g: the other convention
    with pytest.raises(AssertionError, match=r"cotangent of args\[0\]: worst at index"):
        check_vjp(adjoint, x, reference=_fft)


def test_a_missing_conjugate_is_caught_for_a_real_function_of_a_complex_input():
    """|z|^2: JAX's cotangent is 2 g conj(z) (df/dx - i df/dy); 2 g z is the classic slip."""
    energy = lambda z: jnp.sum(jnp.abs(z) ** 2)
    right = _custom_vjp(energy, lambda z: (energy(z), z), lambda z, g: (2 * g * jnp.conj(z),))
    z = _complex(1, (3, 2))
    check_vjp(right, z, reference=energy)
    wrong = _custom_vjp(energy, lambda z: (energy(z), z), lambda z, g: (2 * g * z,))
    with pytest.raises(AssertionError, match=r"cotangent of args\[0\]"):
        check_vjp(wrong, z, reference=energy)


def test_finite_differences_run_along_complex_directions():
    """A rule and a 'reference' that agree on a wrong imaginary part: only the difference
    quotient along a complex direction sees it (the comparison alone is fooled)."""
    @jax.custom_jvp
    def wrong_slope(z):
        return jnp.sum(jnp.abs(z) ** 2)

    wrong_slope.defjvp(lambda p, t: (wrong_slope(p[0]), jnp.sum(2 * jnp.real(p[0] * t[0]))))  # conj missing
    fooled = _custom_vjp(wrong_slope, lambda z: (wrong_slope(z), z), lambda z, g: (2 * g * z,))
    z = _complex(2, (4,))
    check_vjp(fooled, z, reference=wrong_slope, fd=False)
    with pytest.raises(AssertionError, match="finite differences disagree"):
        check_vjp(fooled, z, reference=wrong_slope)


# 2. nondiff_argnums, passed positionally ----------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def power(x, k):
    return x ** k


power.defvjp(lambda x, k: (x ** k, x), lambda k, x, g: (g * k * x ** (k - 1),))


@pytest.mark.parametrize("jit", [True, False])
def test_nondiff_argnums_called_as_f_is_called(jit):
    check_vjp(power, jnp.array([0.3, 1.2]), 3, reference=lambda x, k: x ** k, jit=jit)


def test_a_wrong_rule_with_nondiff_argnums_is_killed_and_the_static_value_reported():
    wrong = jax.custom_vjp(lambda x, k: x ** k, nondiff_argnums=(1,))
    wrong.defvjp(lambda x, k: (x ** k, x), lambda k, x, g: (g * k * x ** k,))
    with pytest.raises(AssertionError, match=r"static: args\[1\]=3\):\n  - cotangent of args\[0\]"):
        check_vjp(wrong, jnp.array([0.3, 1.2]), 3, reference=lambda x, k: x ** k)


def test_nondiff_argnums_beyond_the_arguments_given_is_a_clear_error():
    with pytest.raises(TypeError, match=r"nondiff_argnums=\(1,\) but was given 1 positional argument"):
        check_vjp(power, jnp.array([0.3]), reference=lambda x: x ** 3)


# 3. equinox modules with non-array leaves ------------------------------------------------------------
def _mlp(eqx, seed, activation):
    mlp = eqx.nn.MLP(3, 2, 4, 2, activation=activation, key=jax.random.PRNGKey(seed))
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, mlp)


def test_an_equinox_mlp_with_a_function_leaf_under_filter_custom_vjp():
    eqx = pytest.importorskip("equinox")
    x = _normal(3, (3,))

    def make(scale):
        @eqx.filter_custom_vjp
        def run(mlp, x):
            return mlp(x)

        run.def_fwd(lambda perturbed, mlp, x: (mlp(x), None))
        run.def_bwd(lambda res, g, perturbed, mlp, x: jax.tree_util.tree_map(
            lambda c: scale * c, eqx.filter_vjp(lambda m: m(x), mlp)[1](g)[0]))
        return run

    mlp = _mlp(eqx, 0, jnp.tanh)   # activation=jnp.tanh, a PjitFunction leaf
    for jit in (True, False):
        check_vjp(lambda m: make(1.0)(m, x), mlp, reference=lambda m: m(x), jit=jit)
    with pytest.raises(AssertionError, match=r"static: args\[0\]\.activation=<PjitFunction tanh>.*\n"
                                             r"  - cotangent of args\[0\]\.layers\[0\]\.weight"):
        check_vjp(lambda m: make(1.01)(m, x), mlp, reference=lambda m: m(x))


def test_a_custom_vjp_activation_inside_an_equinox_mlp():
    eqx = pytest.importorskip("equinox")

    def tanh_with(slope):
        return _custom_vjp(jnp.tanh, lambda x: (jnp.tanh(x), jnp.tanh(x)), lambda y, g: (g * slope(y),))

    plain = lambda m, x: eqx.tree_at(lambda m: m.activation, m, jnp.tanh)(x)
    x = _normal(4, (3,))
    check_vjp(lambda m, x: m(x), _mlp(eqx, 1, tanh_with(lambda y: 1 - y * y)), x, reference=plain)
    with pytest.raises(AssertionError, match=r"cotangent of args\[0\]\.layers\[0\]\.weight"):
        check_vjp(lambda m, x: m(x), _mlp(eqx, 1, tanh_with(lambda y: 1 - y)), x, reference=plain)


# 4. no false alarms: state, float32 models ------------------------------------------------------------
def _bn_args(seed=0, dtype=jnp.float64):
    rng = np.random.default_rng(seed)
    params = jb.BatchNormParams(jnp.asarray(rng.standard_normal(3), dtype), jnp.asarray(rng.standard_normal(3), dtype))
    return params, jnp.asarray(rng.standard_normal((6, 3)), dtype), jb.batch_norm_state(3)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_with_its_state_passes_finite_differences(training):
    """As in the issue: check_vjp(jb.batch_norm, params, x, state) with fd on (the default)."""
    check_vjp(jb.batch_norm, *_bn_args(), training=training)


def test_finite_differences_still_see_x_beside_state():
    """A stateful layer whose rule and 'autodiff' agree on a wrong slope: state is left out of the
    difference, x is not, and the difference quotient catches it."""
    @jax.custom_jvp
    def sin2(x):
        return jnp.sin(x)

    sin2.defjvp(lambda p, t: (jnp.sin(p[0]), 2 * jnp.cos(p[0]) * t[0]))

    def auto(x, state):   # as batch norm: state and what enters new_state are not differentiated
        state = jax.lax.stop_gradient(state)
        return sin2(x) * state[0], state + jax.lax.stop_gradient(x.mean())

    fwd = lambda x, state: (auto(x, state), (x, state))
    bwd = lambda res, out_bar: (2 * jnp.cos(res[0]) * out_bar[0] * res[1][0], None)
    layer = jb.make_layer(auto, fwd, bwd, name="stateful_sin", roles=("x", "state"))
    x, state = _normal(5, (4,)), jnp.array([1.5])
    check_vjp(layer, x, state, fd=False)
    with pytest.raises(AssertionError, match="finite differences disagree"):
        check_vjp(layer, x, state)


CNN = jb.serial(jb.conv2d.sized(3, 3), jb.tanh, jb.batch_norm, jb.flatten, jb.bind(jb.dropout, rate=0.5),
                jb.linear.sized(2))


@pytest.mark.parametrize("training", [True, False])
def test_a_model_holding_batch_norm_passes_finite_differences(training):
    x = _normal(6, (2, 4, 4, 1))
    params, state = CNN.init(jax.random.PRNGKey(0), x)
    check_vjp(CNN, params, x, state, key=jax.random.PRNGKey(7), training=training)


# conv, relu and a fan_out/parallel/concat skip; these inputs failed the float32 difference quotient
# (-93.4 vs -93.1 at the same sizes, x 4x as wide) while hand = autodiff exactly
SKIP = jb.serial(jb.conv2d.sized(4, 3), jb.relu, jb.fan_out,
                 jb.parallel(jb.identity, jb.serial(jb.relu, jb.conv2d.sized(4, 3))), jb.fan_in_concat, jb.flatten,
                 jb.linear.sized(10))


def _skip_args():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 3), jnp.float32)
    return SKIP.init(jax.random.PRNGKey(2), x)[0], x


def test_a_correct_float32_model_passes_finite_differences():
    check_vjp(SKIP, *_skip_args())


def test_a_correct_float32_model_passes_with_x64_off():
    """With x64 off the differences stay in float32; the quotient's measured error is allowed."""
    with jax.enable_x64(False):
        check_vjp(SKIP, *_skip_args())


def _double_slope_sin():
    @jax.custom_jvp
    def sin2(x):
        return jnp.sin(x)

    sin2.defjvp(lambda p, t: (jnp.sin(p[0]), 2 * jnp.cos(p[0]) * t[0]))
    return jb.make_layer(sin2, lambda x: (jnp.sin(x), x), lambda x, g: (2 * jnp.cos(x) * g,), name="double_slope_sin")


def test_float32_finite_differences_say_which_witness_agreed():
    layer = _double_slope_sin()
    with pytest.raises(AssertionError, match=r"on a float64 copy of the float32 inputs\)\. The other witness "
                                             r"agreed: the hand VJP matches autodiff of the reference"):
        check_vjp(layer, _normal(7, (5,), jnp.float32))
    with jax.enable_x64(False):
        x = jnp.asarray(np.random.default_rng(7).standard_normal(5), jnp.float32)
        with pytest.raises(AssertionError, match=r"in float32 \(x64 is off\), where they are only indicative: "
                                                 r"enable jax_enable_x64 .* or pass fd=False"):
            check_vjp(layer, x)


def test_run_checks_refuses_to_run_with_x64_off():
    info = LayerInfo(jb.tanh, lambda rng, dtype, shape, kind: (jnp.asarray(rng.standard_normal(shape), dtype),),
                     shapes=((3,),))
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=r"run_checks\(tanh\): .*enable jax_enable_x64"):
            run_checks(info, only=("injected_error",))
        test = jb.testing.pytest_tests([info])
        (check,) = [p.values[0] for p in test.pytestmark[0].args[1] if p.id == "tanh-injected_error"]
        with pytest.raises(RuntimeError, match=r"tanh: .*enable jax_enable_x64"):
            test(check)
    assert run_checks(info, only=("injected_error",)).passed == ("injected_error",)


# 5. second-order bugs: only order=2 catches them --------------------------------------------------------
def _sinc_with(slope_at_zero):
    """sinc(x) = sin(pi x) / (pi x); d/dx = (cos(pi x) - sinc(x)) / x, with a branch at 0."""
    def bwd(x, g):
        safe = jnp.where(x == 0, 1.0, x)
        return (g * jnp.where(x == 0, slope_at_zero(x), (jnp.cos(jnp.pi * safe) - jnp.sinc(safe)) / safe),)
    return _custom_vjp(jnp.sinc, lambda x: (jnp.sinc(x), x), bwd)


SINC_SERIES = _sinc_with(lambda x: -jnp.pi ** 2 / 3 * x)    # the series' first term: d/dx of it is right
SINC_CONSTANT = _sinc_with(lambda x: jnp.zeros_like(x))      # right value 0, wrong derivative: the bug


def test_a_series_branch_at_zero_is_only_caught_at_order_2():
    x = jnp.array([0.0, 0.0, 0.7])
    check_vjp(SINC_CONSTANT, x, reference=jnp.sinc)                 # first order: right
    check_vjp(SINC_SERIES, x, reference=jnp.sinc, order=2)
    with pytest.raises(AssertionError, match=r"grad of grad, args\[0\]: worst at index \(0,\)"):
        check_vjp(SINC_CONSTANT, x, reference=jnp.sinc, order=2)


def _cardano(a):
    """The real root of x^3 + x = a, in closed form: the reference for the root finder."""
    s = jnp.sqrt(a * a / 4 + 1 / 27)
    return jnp.cbrt(a / 2 + s) + jnp.cbrt(a / 2 - s)


def _newton(a):
    x = jax.lax.fori_loop(0, 60, lambda i, x: x - (x ** 3 + x - a) / (3 * x * x + 1), a / 2)
    return jax.lax.stop_gradient(x)   # a solver run, not differentiated through


@jax.custom_vjp
def root(a):
    return _newton(a)


# implicit differentiation: f(x, a) = x^3 + x - a = 0, so dx/da = 1 / (3 x^2 + 1)
root.defvjp(lambda a: (_newton(a), a), lambda a, g: (g / (3 * root(a) ** 2 + 1),))
# the same rule with x from the residuals: right first derivative, but bwd's x no longer moves with a
root_frozen_x = _custom_vjp(_newton, lambda a: (_newton(a), _newton(a)), lambda x, g: (g / (3 * x ** 2 + 1),))


def test_implicit_differentiation_through_a_root_finder_is_only_caught_at_order_2():
    a = jnp.array([0.5, -2.0, 3.0])
    check_vjp(root, a, reference=_cardano, order=2)
    check_vjp(root_frozen_x, a, reference=_cardano)
    with pytest.raises(AssertionError, match=r"grad of grad, args\[0\]"):
        check_vjp(root_frozen_x, a, reference=_cardano, order=2)


def _scalar_info(layer, **kw):
    sample = lambda rng, dtype, shape, kind: (jnp.asarray(rng.standard_normal(shape) + 0.5, dtype),)
    return LayerInfo(layer, sample, shapes=((3,),), dtypes=(jnp.float64,), **kw)


def test_run_checks_runs_order_2_where_the_layer_is_twice_differentiable():
    """sample[grad_of_grad] (grad_of_grad in supports) catches the frozen root; an edge case that
    asks for ``order=2`` catches the constant series at 0."""
    frozen = jb.make_layer(_cardano, lambda a: (_newton(a), _newton(a)), lambda x, g: (g / (3 * x ** 2 + 1),),
                           name="frozen_root")
    report = run_checks(_scalar_info(frozen), only=("float64", "sample[grad_of_grad]"), raise_on_failure=False)
    assert report.passed == ("float64",) and [n for n, _ in report.failed] == ["sample[grad_of_grad]"]

    @dataclasses.dataclass(frozen=True)
    class SecondOrderEdge(EdgeCase):   # the registry's EdgeCase with the proposed ``order`` field
        order: int = 2

    at_zero = SecondOrderEdge("zero", lambda dt: (jnp.zeros(2, dt),), "sinc'(0) = 0 and sinc''(0) = -pi^2 / 3")
    for bwd, ok in ((SINC_SERIES.bwd, True), (SINC_CONSTANT.bwd, False)):
        sinc = jb.make_layer(jnp.sinc, lambda x: (jnp.sinc(x), x), bwd, name="sinc")
        report = run_checks(_scalar_info(sinc, edge_cases=(at_zero,)), only=("edge",), raise_on_failure=False)
        assert report.ok == ok, report


# 6. report wording: a model's paths --------------------------------------------------------------------
def test_a_models_cotangents_are_named_by_its_paths():
    def negated_bias(res, y_bar):
        params_bar, x_bar = jb.linear.bwd(res, y_bar)
        return params_bar._replace(b=-params_bar.b), x_bar

    bad = jb.make_layer(jb.linear.auto, jb.linear.fwd, negated_bias, name="bad_linear", init=jb.linear.init,
                        infer=jb.linear.infer)
    model = jb.serial(jb.linear.sized(4), jb.tanh, jb.fan_out, jb.parallel(jb.identity, bad.sized(4)),
                      jb.fan_in_concat)
    x = _normal(8, (5, 3))
    params = model.init(jax.random.PRNGKey(0), x)[0]
    with pytest.raises(AssertionError) as err:
        check_vjp(model, params, x)
    message = str(err.value)
    assert "inputs: serial[0].linear.w float64[3, 4], serial[0].linear.b float64[4], " \
           "serial[3].parallel[1].bad_linear.w float64[4, 4]" in message
    assert "- cotangent of serial[3].parallel[1].bad_linear.b: worst at index" in message
    assert "args[0][" not in message and "args[1] float64[5, 3]" in message
