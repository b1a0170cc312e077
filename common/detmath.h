/*
 * detmath.h: the transcendental functions of the numeric path, computed the
 * same way on every x86-64 CPU.
 *
 * glibc's libm picks at run time among builds of log, cos, pow (and their
 * float versions) made for CPUs with and without FMA, and those do not
 * round alike: on this project's machine, 20 million log, cos and pow calls
 * gave different last bits with the FMA builds switched off
 * (GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA). A weight initialised with
 * log and cos, an AdamW bias correction with pow, or a learning rate with
 * cos would then differ between two machines. These functions use only
 * +, -, *, / and the exact frexp/ldexp/floor, so with -ffp-contract=off (the
 * default build, Makefile) they give the same bits everywhere.
 *
 * The algorithms and polynomial coefficients are fdlibm's (e_log.c, e_exp.c,
 * k_sin.c, k_cos.c), whose notice follows:
 *   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
 *   Developed at SunPro, a Sun Microsystems, Inc. business.
 *   Permission to use, copy, modify, and distribute this software is freely
 *   granted, provided that this notice is preserved.
 * The argument reduction of sin and cos is a four-part Cody-Waite split of
 * pi/2 (three 25-bit parts, so that n times each is exact for |n| < 2^28,
 * then the rest), exact enough for |x| < 2^27, which covers every use here
 * (RoPE angles of positions < 2^24, cos on [0, 2 pi]). Accuracy, checked
 * against glibc in tests/test_hardening.c: log and exp within 1 ulp, sin and
 * cos within 2.5 ulps, pow within 3 + 2 |e log b| ulps (below).
 */
#ifndef S1C_DETMATH_H
#define S1C_DETMATH_H

#include <math.h>
#include <stdint.h>

// log(x): fdlibm's e_log.c. x = 2^k m with m in [sqrt(1/2), sqrt(2)), f = m - 1,
// log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with s = f / (2 + f).
static inline double det_log(double x) {
    if (x != x) return x;
    if (x < 0) return NAN;
    if (x == 0) return -INFINITY;
    if (isinf(x)) return x;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
                 Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    int k;
    double m = frexp(x, &k);   // x = m 2^k, m in [0.5, 1): exact
    if (m < 0.70710678118654752440) { m *= 2.0; k--; }
    double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
    double t1 = w * (Lg2 + w * (Lg4 + w * Lg6)), t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7))), R = t2 + t1;
    double dk = (double)k;
    return s * (hfsq + R) + dk * ln2_lo - hfsq + f + dk * ln2_hi;
}

// exp(x): fdlibm's e_exp.c. x = k ln2 + r, |r| <= ln2/2, exp(r) from a
// rational form with a degree-5 polynomial, then scaled by 2^k.
static inline double det_exp(double x) {
    if (x != x) return x;
    if (x > 709.782712893383973096) return INFINITY;
    if (x < -745.13321910194110842) return 0.0;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10, inv_ln2 = 1.44269504088896338700e+00;
    const double P1 = 1.66666666666666019037e-01, P2 = -2.77777777770155933842e-03, P3 = 6.61375632143793436117e-05,
                 P4 = -1.65339022054652515390e-06, P5 = 4.13813679705723846039e-08;
    double kd = floor(x * inv_ln2 + 0.5);   // |k| <= 1075: k ln2_hi is exact (ln2_hi has 32 bits)
    double hi = x - kd * ln2_hi, lo = kd * ln2_lo, r = hi - lo, t = r * r;
    double c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    double y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    return ldexp(y, (int)kd);
}

// b^e for b > 0, as exp(e log b). The errors of log b and of e log b
// (relative 2^-53 each) become a relative error of up to |e log b| 2^-52 in
// the result: within 3 + 2 |e log b| ulps. For AdamW's beta^step that is at
// most ~80 ulps (2e-14) while the result still matters next to 1
// (|e log b| < 40), far below the float the scalars are rounded to; b^1 is b.
static inline double det_pow(double b, double e) {
    if (b == 1.0 || e == 0.0) return 1.0;
    if (e == 1.0) return b;
    return det_exp(e * det_log(b));
}

// x - n pi/2 for n = the nearest integer to x 2/pi; *quadrant = n mod 4. NaN beyond |x| < 2^27.
static inline double det_reduce_pio2(double x, int *quadrant) {
    if (!(fabs(x) < 134217728.0)) { *quadrant = 0; return NAN; }
    const double c1 = 0x1.921fb5p+0, c2 = 0x1.110b46p-26, c3 = 0x1.1a6263p-54, c4 = 0x1.8a2e03707344ap-81;
    double n = floor(x * 0x1.45f306dc9c883p-1 + 0.5);   // x * 2/pi, rounded
    double r = x - n * c1;                             // exact: n c1 has at most 53 bits and is close to x
    r = r - n * c2;
    r = r - n * c3;
    r = r - n * c4;
    *quadrant = (int)(n - 4.0 * floor(n * 0.25));
    return r;
}

// fdlibm's k_sin.c and k_cos.c on |x| <= pi/4 (no tail term: the reduction is accurate to ~1e-32 here)
static inline double det_kernel_sin(double x) {
    const double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03, S3 = -1.98412698298579493134e-04,
                 S4 = 2.75573137070700676789e-06, S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
    double z = x * x, w = z * z, r = S2 + z * (S3 + z * S4) + z * w * (S5 + z * S6), v = z * x;
    return x + v * (S1 + z * r);
}

static inline double det_kernel_cos(double x) {
    const double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03, C3 = 2.48015872894767294178e-05,
                 C4 = -2.75573143513906633035e-07, C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
    double z = x * x, w = z * z, r = z * (C1 + z * (C2 + z * C3)) + w * w * (C4 + z * (C5 + z * C6));
    double hz = 0.5 * z, one_minus = 1.0 - hz;
    return one_minus + (((1.0 - one_minus) - hz) + z * r);
}

static inline double det_sin(double x) {
    int q;
    double r = det_reduce_pio2(x, &q);
    return q == 0 ? det_kernel_sin(r) : q == 1 ? det_kernel_cos(r) : q == 2 ? -det_kernel_sin(r) : -det_kernel_cos(r);
}

static inline double det_cos(double x) {
    int q;
    double r = det_reduce_pio2(x, &q);
    return q == 0 ? det_kernel_cos(r) : q == 1 ? -det_kernel_sin(r) : q == 2 ? -det_kernel_cos(r) : det_kernel_sin(r);
}

// float versions: the double result rounded once to float
static inline float det_logf(float x) { return (float)det_log((double)x); }
static inline float det_expf(float x) { return (float)det_exp((double)x); }
static inline float det_sinf(float x) { return (float)det_sin((double)x); }
static inline float det_cosf(float x) { return (float)det_cos((double)x); }
static inline float det_powf(float b, float e) { return (float)det_pow((double)b, (double)e); }   // b > 0 (RoPE's theta)

#endif // S1C_DETMATH_H
