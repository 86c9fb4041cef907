#include "Elementwise.h"

#include "Simd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace flowforce::native {

namespace {

// ---------------------------------------------------------------------------------------------
// sigma[rho](t) = rho(t) / (rho(t) + rho(1 - t)) and its derivatives for arrays of points t and
// sharpnesses s. Exponential ramp: sigma = logistic(z), z = s ((1-t)^-beta - t^-beta); monomial ramp of
// order k: sigma = t^k / (t^k + (1-t)^k). Outside (guard, 1 - guard) sigma is exactly 0 or 1.

enum class Ramp { Exp1, Exp2, Monomial };

template <Ramp R, bool Second>
inline void sigmaLoop(int64_t n, const double* __restrict t, const double* __restrict s, int order,
                      double* __restrict v, double* __restrict dt, double* __restrict dtt, double* __restrict ds,
                      double* __restrict dts) {
    const double guard = R == Ramp::Monomial ? 0.0 : kEdgeGuard;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const double ti = t[i];
        const bool in = ti > guard && ti < 1.0 - guard;
        const double tc = in ? ti : 0.5, uc = 1.0 - tc;
        const double rtu = 1.0 / (tc * uc);
        const double it = uc * rtu, iu = tc * rtu;  // 1/t and 1/(1-t) with one division
        double sg, q, dphi, ddphi, phi = 0, si;
        if constexpr (R == Ramp::Monomial) {
            double tk = 1.0, uk = 1.0;
            for (int j = 0; j < order; ++j) {
                tk *= tc;
                uk *= uc;
            }
            const double den = 1.0 / (tk + uk);
            sg = tk * den;
            q = tk * uk * den * den;
            si = static_cast<double>(order);
            dphi = it + iu;
            ddphi = iu * iu - it * it;
        } else {
            if constexpr (R == Ramp::Exp1) {
                phi = iu - it;
                dphi = iu * iu + it * it;
                ddphi = 2.0 * (iu * iu * iu - it * it * it);
            } else {
                const double it2 = it * it, iu2 = iu * iu;
                phi = iu2 - it2;
                dphi = 2.0 * (iu2 * iu + it2 * it);
                ddphi = 6.0 * (iu2 * iu2 - it2 * it2);
            }
            si = s[i];
            const double z = si * phi;
            const double e = vexp(-std::fabs(z));
            const double inv = 1.0 / (1.0 + e);
            sg = z >= 0 ? inv : e * inv;
            q = e * inv * inv;
        }
        v[i] = in ? sg : (ti >= 0.5 ? 1.0 : 0.0);
        dt[i] = in ? q * si * dphi : 0.0;
        if constexpr (Second) {
            const double m = q * (1.0 - 2.0 * sg);
            dtt[i] = in ? m * si * si * dphi * dphi + q * si * ddphi : 0.0;
            if constexpr (R == Ramp::Monomial) {
                ds[i] = 0.0;
                dts[i] = 0.0;
            } else {
                ds[i] = in ? q * phi : 0.0;
                dts[i] = in ? m * phi * si * dphi + q * dphi : 0.0;
            }
        }
    }
}

FLOWFORCE_MULTIVERSION
void sigmaArray(Ramp r, bool second, int64_t n, const double* t, const double* s, int order, double* v, double* dt,
                double* dtt, double* ds, double* dts) {
    switch (r) {
        case Ramp::Exp1:
            second ? sigmaLoop<Ramp::Exp1, true>(n, t, s, order, v, dt, dtt, ds, dts)
                   : sigmaLoop<Ramp::Exp1, false>(n, t, s, order, v, dt, dtt, ds, dts);
            return;
        case Ramp::Exp2:
            second ? sigmaLoop<Ramp::Exp2, true>(n, t, s, order, v, dt, dtt, ds, dts)
                   : sigmaLoop<Ramp::Exp2, false>(n, t, s, order, v, dt, dtt, ds, dts);
            return;
        case Ramp::Monomial:
            second ? sigmaLoop<Ramp::Monomial, true>(n, t, s, order, v, dt, dtt, ds, dts)
                   : sigmaLoop<Ramp::Monomial, false>(n, t, s, order, v, dt, dtt, ds, dts);
            return;
    }
}

/** The wrapped bump on the circle sums sigma over the copies at t - a, t, t + a. With a >= 1 at most one
 *  copy lies inside (0, 1) (where sigma varies); the others are exactly 0 or 1. For each t: the copy to
 *  evaluate (tin) and how many of the others contribute 1 (steps). */
void wrapCircle(int64_t n, const double* __restrict t, const double* __restrict a, double guard, double* __restrict tin,
                double* __restrict steps) {
    for (int64_t i = 0; i < n; ++i) {
        const double tm = t[i] - a[i], t0 = t[i], tp = t[i] + a[i];
        const bool inM = tm > guard && tm < 1.0 - guard, inP = tp > guard && tp < 1.0 - guard;
        tin[i] = inM ? tm : (inP ? tp : t0);
        steps[i] = (inM ? 0.0 : (tm >= 0.5 ? 1.0 : 0.0)) + ((inM || inP) ? (t0 >= 0.5 ? 1.0 : 0.0) : 0.0) +
                   (inP ? 0.0 : (tp >= 0.5 ? 1.0 : 0.0));
    }
}

FLOWFORCE_MULTIVERSION
void expArray(int64_t n, const double* __restrict x, double* __restrict y) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = vexp(x[i]);
}

/** Rows of K values: softmax of each row (raw -> p). */
void softmaxRows(int64_t rows, int64_t K, const double* raw, double* p, double* tmp) {
    for (int64_t r = 0; r < rows; ++r) {
        const double* x = raw + r * K;
        double m = x[0];
        for (int64_t k = 1; k < K; ++k) m = std::max(m, x[k]);
        for (int64_t k = 0; k < K; ++k) tmp[r * K + k] = x[k] - m;
    }
    expArray(rows * K, tmp, p);
    for (int64_t r = 0; r < rows; ++r) {
        double sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += p[r * K + k];
        const double inv = 1.0 / sum;
        for (int64_t k = 0; k < K; ++k) p[r * K + k] *= inv;
    }
}

/** Cotangent of softmax inputs for rows of K: p (g - sum p g). */
void softmaxBackwardRows(int64_t rows, int64_t K, const double* p, const double* g, double* out) {
    for (int64_t r = 0; r < rows; ++r) {
        double dot = 0;
        for (int64_t k = 0; k < K; ++k) dot += p[r * K + k] * g[r * K + k];
        for (int64_t k = 0; k < K; ++k) out[r * K + k] = p[r * K + k] * (g[r * K + k] - dot);
    }
}

/** Cotangents of a mixture component's constrained parameters (w, s, b, a, c) from the cotangents YB of
 *  its element's output and PB of its element's derivative, for n components (SmoothCoupling's arrays). */
FLOWFORCE_MULTIVERSION
void vjpLoop(bool circular, int64_t n, const double* __restrict Wv, const double* __restrict Av,
                    const double* __restrict Bv, const double* __restrict Cv, const double* __restrict G0v,
                    const double* __restrict G0t, const double* __restrict G0s, const double* __restrict G1v,
                    const double* __restrict G1t, const double* __restrict G1s, const double* __restrict Gv,
                    const double* __restrict Gt, const double* __restrict Gtt, const double* __restrict Gs,
                    const double* __restrict Gts, const double* __restrict FKv, const double* __restrict FPKv,
                    const double* __restrict YB, const double* __restrict PB, const double* __restrict X,
                    double* __restrict gw, double* __restrict gs, double* __restrict gb, double* __restrict ga,
                    double* __restrict gc) {
    if (!circular) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
            const double a = Av[i], b = Bv[i], c = Cv[i], x = X[i];
            gw[i] = YB[i] * FKv[i] + PB[i] * FPKv[i];
            const double fbar = YB[i] * Wv[i], fpbar = PB[i] * Wv[i];
            const double iN = 1.0 / (G1v[i] - G0v[i]);
            const double Q = (Gv[i] - G0v[i]) * iN, R = a * Gt[i] * iN;
            gc[i] = fbar * (x - Q) + fpbar * (1.0 - R);
            const double Qb = fbar * (1.0 - c), Rb = fpbar * (1.0 - c);
            const double Nb = -(Qb * Q + Rb * R) * iN;
            const double Gb = Qb * iN, Gtb = Rb * a * iN;
            const double g0b = -Qb * iN - Nb, g1b = Nb;
            const double tb = Gb * Gt[i] + Gtb * Gtt[i];
            gs[i] = Gb * Gs[i] + Gtb * Gts[i] + g0b * G0s[i] + g1b * G1s[i];
            const double t0b = g0b * G0t[i], t1b = g1b * G1t[i];
            ga[i] = Rb * Gt[i] * iN + tb * (x - b) - t0b * b + t1b * (1.0 - b);
            gb[i] = -a * (tb + t0b + t1b);
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
            const double a = Av[i], c = Cv[i], x = X[i];
            gw[i] = YB[i] * FKv[i] + PB[i] * FPKv[i];
            const double fbar = YB[i] * Wv[i], fpbar = PB[i] * Wv[i];
            const double Q = Gv[i] - G0v[i] - G1v[i], R = a * Gt[i];
            gc[i] = fbar * (x - Q) + fpbar * (1.0 - R);
            const double Qb = fbar * (1.0 - c), Rb = fpbar * (1.0 - c);
            const double tb = Qb * Gt[i] + Rb * a * Gtt[i];
            gs[i] = Qb * Gs[i] + Rb * a * Gts[i] - Qb * (G0s[i] + G1s[i]);
            const double t0b = -Qb * G0t[i], t1b = -Qb * G1t[i];
            gb[i] = -a * (tb + t0b + t1b);
            ga[i] = 0.0;
        }
    }
}


// ---------------------------------------------------------------------------------------------
// Smooth mixtures, vectorised over the n = d K components of a coupling's elements

class SmoothCoupling : public CouplingTransform {
public:
    SmoothCoupling(const TransformSpec& spec, int64_t d)
        : o_(spec.smooth), circular_(spec.circular), d_(d), K_(spec.smooth.components), n_(d * spec.smooth.components),
          P_(spec.numParams()) {
        if (o_.ramp == RampType::Monomial) ramp_ = Ramp::Monomial;
        else ramp_ = o_.beta == 1 ? Ramp::Exp1 : Ramp::Exp2;
        scratch_.assign(savedSize(), 0.0);
        tmp_.assign(static_cast<size_t>(n_) * kTmpArrays, 0.0);
    }

    size_t savedSize() const override { return static_cast<size_t>(n_) * kArrays + 3 * static_cast<size_t>(d_); }

    double forward(const double* raw, const double* x, double* y, bool inverse, double* saved) override {
        double* sv = saved ? saved : scratch_.data();
        const bool derivs = saved != nullptr;
        constrain(raw, sv);
        ends(sv, derivs);
        double* xe = sv + kArrays * n_;
        if (inverse)
            for (int64_t e = 0; e < d_; ++e) xe[e] = root(sv, e, x[e]);
        else
            std::memcpy(xe, x, sizeof(double) * static_cast<size_t>(d_));
        double* F = tmp(kF);
        evaluateAt(sv, derivs, F);
        const double* fp = xe + d_;
        double logdet = 0;
        for (int64_t e = 0; e < d_; ++e) logdet += std::log(fp[e]);
        if (inverse) {
            std::memcpy(y, xe, sizeof(double) * static_cast<size_t>(d_));
            return -logdet;
        }
        std::memcpy(y, F, sizeof(double) * static_cast<size_t>(d_));
        return logdet;
    }

    void backward(const double*, const double* sv, const double* ybar, double lbar, bool inverse, double* xbar,
                  double* rawBar) override {
        const int64_t n = n_, K = K_;
        const double* xe = sv + kArrays * n;
        const double* FP = xe + d_;
        const double* FPP = FP + d_;
        double* YB = tmp(0);
        double* PB = tmp(1);
        double* X = tmp(2);
        for (int64_t e = 0; e < d_; ++e) {
            double yb, pb;
            if (!inverse) {
                xbar[e] = ybar[e] * FP[e] + lbar * FPP[e] / FP[e];
                yb = ybar[e];
                pb = lbar / FP[e];
            } else {
                // z = f^-1(x), l = -log f'(z): the implicit-function rules (Inversion.h)
                const double xb = ybar[e] / FP[e] - lbar * FPP[e] / (FP[e] * FP[e]);
                xbar[e] = xb;
                yb = -xb;
                pb = -lbar / FP[e];
            }
            for (int64_t k = 0; k < K; ++k) {
                YB[e * K + k] = yb;
                PB[e * K + k] = pb;
                X[e * K + k] = xe[e];
            }
        }
        double* gw = tmp(3);
        double* gs = tmp(4);
        double* gb = tmp(5);
        double* ga = tmp(6);
        double* gc = tmp(7);
        componentVjp(sv, YB, PB, X, gw, gs, gb, ga, gc);
        // constrained -> raw, scattered into [d][P]
        double* rw = tmp(0);
        softmaxBackwardRows(d_, K, arr(sv, W), gw, rw);
        double* ub = tmp(1);
        for (int64_t e = 0; e < d_; ++e) {  // b_k = sum_{j<=k} u_j - u_k/2  ->  ubar_j = sum_{k>=j} bbar_k - bbar_j/2
            double tail = 0;
            for (int64_t k = K; k-- > 0;) {
                tail += gb[e * K + k];
                ub[e * K + k] = tail - 0.5 * gb[e * K + k];
            }
        }
        double* rb = tmp(2);
        softmaxBackwardRows(d_, K, arr(sv, U), ub, rb);
        const double* DS = arr(sv, DSv);
        const double* DA = arr(sv, DAv);
        const double* DC = arr(sv, DCv);
        const bool expo = ramp_ != Ramp::Monomial;
        for (int64_t e = 0; e < d_; ++e) {
            double* r = rawBar + e * P_;
            for (int64_t k = 0; k < K; ++k) {
                const int64_t i = e * K + k;
                int64_t at = 0;
                r[at + k] = rw[i];
                at += K;
                if (expo) {
                    r[at + k] = gs[i] * DS[i];
                    at += K;
                }
                r[at + k] = rb[i];
                at += K;
                r[at + k] = ga[i] * DA[i];
                at += K;
                r[at + k] = gc[i] * DC[i];
            }
        }
    }

private:
    // saved arrays of n values each (in this order), then the d values XE (evaluation points), FP, FPP
    enum Array { W, S, DSv, U, B, A, DAv, C, DCv, G0V, G0T, G0S, G1V, G1T, G1S, GV, GT, GTT, GS, GTS, FK, FPK, kArrays };
    static constexpr int kTmpArrays = 12;
    static constexpr int kF = 11;  // temporary holding the per-element values F

    double* arr(double* sv, int a) const { return sv + static_cast<int64_t>(a) * n_; }
    const double* arr(const double* sv, int a) const { return sv + static_cast<int64_t>(a) * n_; }
    double* tmp(int k) { return tmp_.data() + static_cast<int64_t>(k) * n_; }
    double guard() const { return ramp_ == Ramp::Monomial ? 0.0 : kEdgeGuard; }

    void constrain(const double* raw, double* sv) {
        const int64_t K = K_, n = n_;
        const bool expo = ramp_ != Ramp::Monomial;
        // gather the raw parameters into rows of K: weights, sharpness, locations, log-scales, identity
        double* rw = tmp(0);
        double* rs = tmp(1);
        double* rl = tmp(2);
        double* ra = tmp(3);
        double* rc = tmp(4);
        double* rows[5] = {rw, expo ? rs : nullptr, rl, ra, rc};
        for (int64_t e = 0; e < d_; ++e) {
            const double* p = raw + e * P_;
            for (int64_t h = 0, r = 0; h < 5; ++h) {
                if (!rows[h]) continue;
                double* dst = rows[h] + e * K;
                const double* src = p + (r++) * K;
                for (int64_t k = 0; k < K; ++k) dst[k] = src[k];
            }
        }
        double* e1 = tmp(5);
        softmaxRows(d_, K, rw, arr(sv, W), e1);
        softmaxRows(d_, K, rl, arr(sv, U), e1);
        double* Bv = arr(sv, B);
        const double* Uv = arr(sv, U);
        for (int64_t e = 0; e < d_; ++e) {
            double cum = 0;
            for (int64_t k = 0; k < K; ++k) {
                cum += Uv[e * K + k];
                Bv[e * K + k] = cum - 0.5 * Uv[e * K + k];
            }
        }
        // logistic maps: exp(-raw) for sharpness and identity weights, exp(2 raw) for tanh
        double* Sv = arr(sv, S);
        double* DS = arr(sv, DSv);
        double* Cv = arr(sv, C);
        double* DC = arr(sv, DCv);
        double* Av = arr(sv, A);
        double* DA = arr(sv, DAv);
        double* neg = tmp(6);
        double* ex = tmp(7);
        if (expo) {
            for (int64_t i = 0; i < n; ++i) neg[i] = -rs[i];
            expArray(n, neg, ex);
            for (int64_t i = 0; i < n; ++i) {
                const double sg = 1.0 / (1.0 + ex[i]);
                Sv[i] = o_.sharpnessMin + o_.sharpnessSpan * sg;
                DS[i] = o_.sharpnessSpan * sg * (1.0 - sg);
            }
        } else {
            for (int64_t i = 0; i < n; ++i) Sv[i] = static_cast<double>(o_.monomialOrder), DS[i] = 0.0;
        }
        for (int64_t i = 0; i < n; ++i) neg[i] = -rc[i];
        expArray(n, neg, ex);
        for (int64_t i = 0; i < n; ++i) {
            const double sg = 1.0 / (1.0 + ex[i]);
            Cv[i] = o_.minIdentity + (1.0 - o_.minIdentity) * sg;
            DC[i] = (1.0 - o_.minIdentity) * sg * (1.0 - sg);
        }
        if (circular_) {
            for (int64_t i = 0; i < n; ++i) Av[i] = o_.scale, DA[i] = 0.0;
        } else {
            // a = a0 exp(bound tanh(raw)), tanh(r) = 1 - 2 / (exp(2r) + 1)
            double* th = tmp(8);
            for (int64_t i = 0; i < n; ++i) neg[i] = 2.0 * ra[i];
            expArray(n, neg, ex);
            for (int64_t i = 0; i < n; ++i) {
                th[i] = 1.0 - 2.0 / (ex[i] + 1.0);
                neg[i] = o_.logScaleBound * th[i];
            }
            expArray(n, neg, ex);
            for (int64_t i = 0; i < n; ++i) {
                Av[i] = o_.scale * ex[i];
                DA[i] = Av[i] * o_.logScaleBound * (1.0 - th[i] * th[i]);
            }
        }
    }

    /** g0 = sigma(1/2 - a b), g1 = sigma(a (1 - b) + 1/2): the bump CDF at the interval ends. */
    void ends(double* sv, bool derivs) {
        const int64_t n = n_;
        const double* Av = arr(sv, A);
        const double* Bv = arr(sv, B);
        double* t0 = tmp(0);
        double* t1 = tmp(1);
        for (int64_t i = 0; i < n; ++i) {
            t0[i] = 0.5 - Av[i] * Bv[i];
            t1[i] = Av[i] * (1.0 - Bv[i]) + 0.5;
        }
        // the end values need only sigma; backward needs d/dt and d/ds too (the "second" set has d/ds)
        double* junk = tmp(2);
        sigmaArray(ramp_, derivs, n, t0, arr(sv, S), o_.monomialOrder, arr(sv, G0V), arr(sv, G0T), junk, arr(sv, G0S), tmp(3));
        sigmaArray(ramp_, derivs, n, t1, arr(sv, S), o_.monomialOrder, arr(sv, G1V), arr(sv, G1T), junk, arr(sv, G1S), tmp(3));
    }

    /** Per component f_k, f_k' and per element F, F', F'' at the points XE. */
    void evaluateAt(double* sv, bool derivs, double* F) {
        const int64_t n = n_, K = K_;
        const double* xe = sv + kArrays * n;
        double* FP = sv + kArrays * n + d_;
        double* FPP = FP + d_;
        const double* Av = arr(sv, A);
        const double* Bv = arr(sv, B);
        const double* Sv = arr(sv, S);
        const double* Cv = arr(sv, C);
        const double* Wv = arr(sv, W);
        double* GVv = arr(sv, GV);
        double* GTv = arr(sv, GT);
        double* GTTv = arr(sv, GTT);
        double* GSv = arr(sv, GS);
        double* GTSv = arr(sv, GTS);
        double* t = tmp(0);
        for (int64_t e = 0; e < d_; ++e)
            for (int64_t k = 0; k < K; ++k) t[e * K + k] = Av[e * K + k] * (xe[e] - Bv[e * K + k]) + 0.5;
        if (!circular_) {
            sigmaArray(ramp_, derivs, n, t, Sv, o_.monomialOrder, GVv, GTv, GTTv, GSv, GTSv);
        } else {
            double* tin = tmp(1);
            double* steps = tmp(2);
            wrapCircle(n, t, Av, guard(), tin, steps);
            sigmaArray(ramp_, derivs, n, tin, Sv, o_.monomialOrder, GVv, GTv, GTTv, GSv, GTSv);
            for (int64_t i = 0; i < n; ++i) GVv[i] += steps[i];
        }
        double* FKv = arr(sv, FK);
        double* FPKv = arr(sv, FPK);
        double* fpp = tmp(7);
        const double* G0 = arr(sv, G0V);
        const double* G1 = arr(sv, G1V);
        for (int64_t e = 0; e < d_; ++e)
            for (int64_t k = 0; k < K; ++k) {
                const int64_t i = e * K + k;
                const double a = Av[i], c = Cv[i];
                if (!circular_) {
                    const double iN = 1.0 / (G1[i] - G0[i]);
                    FKv[i] = (1.0 - c) * (GVv[i] - G0[i]) * iN + c * xe[e];
                    FPKv[i] = (1.0 - c) * a * GTv[i] * iN + c;
                    fpp[i] = derivs ? (1.0 - c) * a * a * GTTv[i] * iN : 0.0;
                } else {
                    FKv[i] = (1.0 - c) * (GVv[i] - G0[i] - G1[i]) + c * xe[e];
                    FPKv[i] = (1.0 - c) * a * GTv[i] + c;
                    fpp[i] = derivs ? (1.0 - c) * a * a * GTTv[i] : 0.0;
                }
            }
        for (int64_t e = 0; e < d_; ++e) {
            double f = 0, fp = 0, fpp2 = 0;
            for (int64_t k = 0; k < K; ++k) {
                const int64_t i = e * K + k;
                f += Wv[i] * FKv[i];
                fp += Wv[i] * FPKv[i];
                fpp2 += Wv[i] * fpp[i];
            }
            F[e] = f;
            FP[e] = fp;
            FPP[e] = fpp2;
        }
    }

    /** F(z) and F'(z) of element e. */
    void valueOne(const double* sv, int64_t e, double z, double& F, double& Fp) {
        const int64_t K = K_;
        const double* Av = arr(sv, A) + e * K;
        const double* Bv = arr(sv, B) + e * K;
        const double* Sv = arr(sv, S) + e * K;
        const double* Cv = arr(sv, C) + e * K;
        const double* Wv = arr(sv, W) + e * K;
        const double* G0 = arr(sv, G0V) + e * K;
        const double* G1 = arr(sv, G1V) + e * K;
        double* t = rootTmp_.data();
        double* v = t + K;
        double* dt = v + K;
        double* vs = dt + K;
        double* dts = vs + K;
        for (int64_t k = 0; k < K; ++k) t[k] = Av[k] * (z - Bv[k]) + 0.5;
        if (!circular_) {
            sigmaArray(ramp_, false, K, t, Sv, o_.monomialOrder, v, dt, nullptr, nullptr, nullptr);
        } else {
            wrapCircle(K, t, Av, guard(), vs, dts);
            sigmaArray(ramp_, false, K, vs, Sv, o_.monomialOrder, v, dt, nullptr, nullptr, nullptr);
            for (int64_t k = 0; k < K; ++k) v[k] += dts[k];
        }
        F = 0, Fp = 0;
        for (int64_t k = 0; k < K; ++k) {
            const double a = Av[k], c = Cv[k];
            if (!circular_) {
                const double iN = 1.0 / (G1[k] - G0[k]);
                F += Wv[k] * ((1.0 - c) * (v[k] - G0[k]) * iN + c * z);
                Fp += Wv[k] * ((1.0 - c) * a * dt[k] * iN + c);
            } else {
                F += Wv[k] * ((1.0 - c) * (v[k] - G0[k] - G1[k]) + c * z);
                Fp += Wv[k] * ((1.0 - c) * a * dt[k] + c);
            }
        }
    }

    /** z in [0,1] with F(z) = y: Newton steps kept inside a shrinking bracket (F increases, F(0) = 0, F(1) = 1). */
    double root(const double* sv, int64_t e, double y) {
        if (rootTmp_.size() < static_cast<size_t>(5 * K_)) rootTmp_.assign(static_cast<size_t>(5 * K_), 0.0);
        double lo = 0.0, hi = 1.0, z = std::min(std::max(y, 0.0), 1.0);
        for (int it = 0; it < 200; ++it) {
            double F, Fp;
            valueOne(sv, e, z, F, Fp);
            const double r = F - y;
            if (r == 0.0) return z;
            if (r > 0) hi = z;
            else lo = z;
            double next = z - r / Fp;
            if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
            if (std::fabs(next - z) <= 1e-16 || hi - lo <= 1e-16) return next;
            z = next;
        }
        return z;
    }

    /** Cotangents of the constrained parameters from the cotangents YB of f and PB of f' (per component). */
    void componentVjp(const double* sv, const double* YB, const double* PB, const double* X, double* gw, double* gs,
                      double* gb, double* ga, double* gc) const {
        const int64_t n = n_;
        const double *Wv = arr(sv, W), *Av = arr(sv, A), *Bv = arr(sv, B), *Cv = arr(sv, C);
        const double *G0v = arr(sv, G0V), *G0t = arr(sv, G0T), *G0s = arr(sv, G0S);
        const double *G1v = arr(sv, G1V), *G1t = arr(sv, G1T), *G1s = arr(sv, G1S);
        const double *Gv = arr(sv, GV), *Gt = arr(sv, GT), *Gtt = arr(sv, GTT), *Gs = arr(sv, GS), *Gts = arr(sv, GTS);
        const double *FKv = arr(sv, FK), *FPKv = arr(sv, FPK);
        vjpLoop(circular_, n, Wv, Av, Bv, Cv, G0v, G0t, G0s, G1v, G1t, G1s, Gv, Gt, Gtt, Gs, Gts, FKv, FPKv, YB, PB, X, gw, gs,
                gb, ga, gc);
    }

    SmoothMixtureOptions o_;
    bool circular_;
    Ramp ramp_ = Ramp::Exp1;
    int64_t d_, K_, n_, P_;
    std::vector<double> scratch_, tmp_, rootTmp_;
};

// ---------------------------------------------------------------------------------------------
// Rational-quadratic splines, element by element

double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }  // LibTorch's threshold
double logistic(double x) { return 1.0 / (1.0 + std::exp(-x)); }

class SplineCoupling : public CouplingTransform {
public:
    SplineCoupling(const TransformSpec& spec, int64_t d)
        : o_(spec.spline), circular_(spec.circular), d_(d), K_(spec.spline.bins), P_(spec.numParams()) {
        const auto K = static_cast<size_t>(K_);
        cw_.assign(K + 1, 0.0);
        ch_.assign(K + 1, 0.0);
        dv_.assign(K + 1, 0.0);
        softW_.assign(K, 0.0);
        softH_.assign(K, 0.0);
        rawD_.assign(K + 1, 0.0);
        cwbar_.assign(K + 1, 0.0);
        chbar_.assign(K + 1, 0.0);
        sizeW_.assign(K, 0.0);
        sizeH_.assign(K, 0.0);
    }

    size_t savedSize() const override { return static_cast<size_t>(d_); }

    double forward(const double* raw, const double* x, double* y, bool inverse, double* saved) override {
        double logdet = 0;
        for (int64_t e = 0; e < d_; ++e) {
            knots(raw + e * P_);
            const double z = inverse ? root(x[e]) : x[e];
            evaluate(z, false);
            y[e] = inverse ? z : F_;
            logdet += inverse ? -std::log(Fp_) : std::log(Fp_);
            if (saved) saved[e] = z;
        }
        return logdet;
    }

    void backward(const double* raw, const double* saved, const double* ybar, double lbar, bool inverse, double* xbar,
                  double* rawBar) override {
        for (int64_t e = 0; e < d_; ++e) {
            knots(raw + e * P_);
            evaluate(saved[e], true);
            const double fp = Fp_, dlog = Fpp_ / fp;
            if (!inverse) {
                xbar[e] = ybar[e] * fp + lbar * dlog;
                vjp(ybar[e], lbar / fp, rawBar + e * P_);
            } else {
                const double xb = ybar[e] / fp - lbar * dlog / fp;
                xbar[e] = xb;
                vjp(-xb, -lbar / fp, rawBar + e * P_);
            }
        }
    }

private:
    void softmax(const double* x, double* out) const {
        double m = x[0];
        for (int64_t i = 1; i < K_; ++i) m = std::max(m, x[i]);
        double sum = 0;
        for (int64_t i = 0; i < K_; ++i) sum += (out[i] = std::exp(x[i] - m));
        for (int64_t i = 0; i < K_; ++i) out[i] /= sum;
    }

    void knots(const double* raw) {
        const int64_t K = K_;
        softmax(raw, softW_.data());
        softmax(raw + K, softH_.data());
        cw_[0] = ch_[0] = 0.0;
        double sw = 0, sh = 0;
        for (int64_t j = 1; j < K; ++j) {
            sw += o_.minBinWidth + (1.0 - o_.minBinWidth * static_cast<double>(K)) * softW_[static_cast<size_t>(j - 1)];
            sh += o_.minBinHeight + (1.0 - o_.minBinHeight * static_cast<double>(K)) * softH_[static_cast<size_t>(j - 1)];
            cw_[static_cast<size_t>(j)] = sw;
            ch_[static_cast<size_t>(j)] = sh;
        }
        cw_[static_cast<size_t>(K)] = ch_[static_cast<size_t>(K)] = 1.0;
        const int64_t nd = circular_ ? K : K + 1;
        for (int64_t j = 0; j < nd; ++j) {
            rawD_[static_cast<size_t>(j)] = raw[2 * K + j];
            dv_[static_cast<size_t>(j)] = o_.minDerivative + softplus(raw[2 * K + j]);
        }
        if (circular_) dv_[static_cast<size_t>(K)] = dv_[0];  // tie the seam's slopes
    }

    void evaluate(double x, bool derivatives) {
        int64_t idx = 0;
        for (int64_t j = 1; j < K_; ++j) idx += x >= cw_[static_cast<size_t>(j)];
        bin_ = idx;
        const auto i = static_cast<size_t>(idx);
        x0_ = cw_[i];
        w_ = cw_[i + 1] - x0_;
        y0_ = ch_[i];
        h_ = ch_[i + 1] - y0_;
        d0_ = dv_[i];
        d1_ = dv_[i + 1];
        const double delta = h_ / w_, d0 = d0_, d1 = d1_;
        const double theta = (x - x0_) / w_;
        const double tt = theta * (1.0 - theta);
        const double den = delta + (d0 + d1 - 2.0 * delta) * tt;
        const double num = h_ * (delta * theta * theta + d0 * tt);
        const double A = d1 * theta * theta + 2.0 * delta * tt + d0 * (1.0 - theta) * (1.0 - theta);
        delta_ = delta, theta_ = theta, tt_ = tt, den_ = den, num_ = num, A_ = A, dnum_ = delta * delta * A;
        F_ = y0_ + num / den;
        Fp_ = dnum_ / (den * den);
        if (derivatives) {
            const double dA = 2.0 * d1 * theta + 2.0 * delta * (1.0 - 2.0 * theta) - 2.0 * d0 * (1.0 - theta);
            const double dden = (d0 + d1 - 2.0 * delta) * (1.0 - 2.0 * theta);
            Fpp_ = Fp_ * (dA / A - 2.0 * dden / den) / w_;  // f' d(log f')/dx
        }
    }

    /** Closed-form inverse (Transforms.cpp, RationalQuadraticSplineTransform::inverse). */
    double root(double y) const {
        int64_t idx = 0;
        for (int64_t j = 1; j < K_; ++j) idx += y >= ch_[static_cast<size_t>(j)];
        const auto i = static_cast<size_t>(idx);
        const double x0 = cw_[i], w = cw_[i + 1] - x0, y0 = ch_[i], h = ch_[i + 1] - y0, d0 = dv_[i], d1 = dv_[i + 1];
        const double delta = h / w, dy = y - y0, s = d0 + d1 - 2.0 * delta;
        const double qa = h * (delta - d0) + dy * s, qb = h * d0 - dy * s, qc = -delta * dy;
        const double disc = std::max(qb * qb - 4.0 * qa * qc, 0.0);
        return x0 + (2.0 * qc) / (-qb - std::sqrt(disc)) * w;
    }

    void vjp(double ybar, double fpBar, double* rawBar) {
        const int64_t K = K_;
        const double delta = delta_, d0 = d0_, d1 = d1_, theta = theta_, tt = tt_, den = den_, num = num_, A = A_;
        const double lbar = fpBar * Fp_;  // cotangent of log f'
        const double y0bar = ybar, numbar = ybar / den;
        double denbar = -ybar * num / (den * den) - 2.0 * lbar / den;
        const double dnumbar = lbar / dnum_;
        double hbar = numbar * (delta * theta * theta + d0 * tt);
        double deltabar = numbar * h_ * theta * theta;
        double thetabar = numbar * h_ * (2.0 * delta * theta + d0 * (1.0 - 2.0 * theta));
        double d0bar = numbar * h_ * tt, d1bar = 0;
        deltabar += denbar * (1.0 - 2.0 * tt);
        d0bar += denbar * tt;
        d1bar += denbar * tt;
        thetabar += denbar * (d0 + d1 - 2.0 * delta) * (1.0 - 2.0 * theta);
        deltabar += dnumbar * (2.0 * delta * A + delta * delta * 2.0 * tt);
        d1bar += dnumbar * delta * delta * theta * theta;
        d0bar += dnumbar * delta * delta * (1.0 - theta) * (1.0 - theta);
        thetabar += dnumbar * delta * delta * (2.0 * d1 * theta + 2.0 * delta * (1.0 - 2.0 * theta) - 2.0 * d0 * (1.0 - theta));
        const double x0bar = -thetabar / w_;
        double wbar = -thetabar * theta / w_;
        hbar += deltabar / w_;
        wbar += -deltabar * delta / w_;
        // knots: x0 = cw[i], w = cw[i+1] - cw[i], y0 = ch[i], h = ch[i+1] - ch[i]
        const auto i = static_cast<size_t>(bin_);
        std::fill(cwbar_.begin(), cwbar_.end(), 0.0);
        std::fill(chbar_.begin(), chbar_.end(), 0.0);
        cwbar_[i] += x0bar - wbar;
        cwbar_[i + 1] += wbar;
        chbar_[i] += y0bar - hbar;
        chbar_[i + 1] += hbar;
        // cw[j] = sum_{m<j} size_m for 1 <= j <= K-1 (the ends are pinned to 0 and 1)
        std::fill(sizeW_.begin(), sizeW_.end(), 0.0);
        std::fill(sizeH_.begin(), sizeH_.end(), 0.0);
        double accW = 0, accH = 0;
        for (int64_t m = K - 2; m >= 0; --m) {
            accW += cwbar_[static_cast<size_t>(m + 1)];
            accH += chbar_[static_cast<size_t>(m + 1)];
            sizeW_[static_cast<size_t>(m)] = accW * (1.0 - o_.minBinWidth * static_cast<double>(K));
            sizeH_[static_cast<size_t>(m)] = accH * (1.0 - o_.minBinHeight * static_cast<double>(K));
        }
        softmaxBackwardRows(1, K, softW_.data(), sizeW_.data(), rawBar);
        softmaxBackwardRows(1, K, softH_.data(), sizeH_.data(), rawBar + K);
        const int64_t nd = circular_ ? K : K + 1;
        double* rd = rawBar + 2 * K;
        for (int64_t j = 0; j < nd; ++j) rd[j] = 0.0;
        auto addD = [&](int64_t j, double g) {
            const int64_t jj = (circular_ && j == K) ? 0 : j;
            rd[jj] += g * logistic(rawD_[static_cast<size_t>(jj)]);
        };
        addD(bin_, d0bar);
        addD(bin_ + 1, d1bar);
    }

    SplineOptions o_;
    bool circular_;
    int64_t d_, K_, P_;
    std::vector<double> cw_, ch_, dv_, softW_, softH_, rawD_, cwbar_, chbar_, sizeW_, sizeH_;
    int64_t bin_ = 0;
    double x0_ = 0, w_ = 0, y0_ = 0, h_ = 0, d0_ = 0, d1_ = 0, delta_ = 0, theta_ = 0, tt_ = 0, den_ = 0, num_ = 0,
           dnum_ = 0, A_ = 0, F_ = 0, Fp_ = 0, Fpp_ = 0;
};

}  // namespace

std::unique_ptr<CouplingTransform> CouplingTransform::create(const TransformSpec& spec, int64_t d) {
    if (spec.kind == TransformSpec::Kind::Smooth) return std::make_unique<SmoothCoupling>(spec, d);
    return std::make_unique<SplineCoupling>(spec, d);
}

}  // namespace flowforce::native
